"""labkit: helpers for the multimodal-LLM course (llava-v1.6-34b behind an OpenAI-compatible API).

Example:
    >>> import labkit
    >>> reply = labkit.chat("What is in this image?", image="images/chelsea.jpg")  # doctest: +SKIP

The public names are the ones in ``__all__`` below (pinned by ``tests/test_public_api.py``); the
classes among them say ``labkit.X`` in a traceback, wherever they are defined.

Why ``__tracebackhide__ = True`` appears in labkit's functions: IPython (and pytest) leave a frame
that sets it out of a traceback, so a student sees their own line and labkit's message, not
labkit's internals. It is set in the functions a student calls and in those that raise for them.
"""

from dataclasses import is_dataclass as _is_dataclass

from .backend import client
from .batch import BatchItem, BatchResult, items_from_folder, load_results, run_batch, score_keywords
from .cleanup import RolePrefixStripper, strip_role_prefix
from .config import Secret, Settings, configure, load_settings, mask_key, reset_configuration
from .conversation import Conversation
from .doctor import doctor  # the function: `labkit.doctor()`; the module stays importable as labkit.doctor
from .errors import (
    AuthError,
    BackendError,
    BackendUnreachable,
    ConfigError,
    ImageError,
    LabkitError,
    ModelNotFound,
    OutputError,
    RateLimited,
    RequestRejected,
    ServeError,
    StreamError,
    UnexpectedResponse,
    UsageError,
)
from .grading import grade_folder, list_assignments, write_student_version
from .images import ImageInfo, describe_image, encode_image, estimate_image_tokens, llava_target_size
from .messages import assistant, estimate_tokens, system, user
from .playground import Playground
from .streaming import ChatStream, Reply, chat, stream_chat
from .workspace import SyncReport
from .workspace import sync as sync_workspace

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BackendError",
    "BackendUnreachable",
    "BatchItem",
    "BatchResult",
    "ChatStream",
    "ConfigError",
    "Conversation",
    "ImageError",
    "ImageInfo",
    "LabkitError",
    "ModelNotFound",
    "OutputError",
    "Playground",
    "RateLimited",
    "Reply",
    "RequestRejected",
    "RolePrefixStripper",
    "Secret",
    "ServeError",
    "Settings",
    "StreamError",
    "SyncReport",
    "UnexpectedResponse",
    "UsageError",
    "assistant",
    "chat",
    "client",
    "configure",
    "describe_image",
    "doctor",
    "encode_image",
    "estimate_image_tokens",
    "estimate_tokens",
    "grade_folder",
    "items_from_folder",
    "list_assignments",
    "llava_target_size",
    "load_results",
    "load_settings",
    "mask_key",
    "reset_configuration",
    "run_batch",
    "score_keywords",
    "stream_chat",
    "strip_role_prefix",
    "sync_workspace",
    "system",
    "user",
    "write_student_version",
]

# A student's traceback says `labkit.ImageError`, not `labkit.errors.ImageError` (as httpx does).
# Dataclasses keep their defining module: typing.get_type_hints resolves their (string) annotations there.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) and _value.__module__.startswith("labkit.") and not _is_dataclass(_value):
        _value.__module__ = "labkit"
del _name, _value
