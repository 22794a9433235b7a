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

import importlib as _importlib
import sys as _sys
from dataclasses import is_dataclass as _is_dataclass
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:  # what a type checker and an editor see; at run time each name is imported on first use
    from .backend import client
    from .batch import BatchItem, BatchResult, items_from_folder, load_results, run_batch, score_keywords
    from .checkup import doctor
    from .cleanup import RolePrefixStripper, strip_role_prefix
    from .config import Secret, Settings, configure, load_settings, mask_key, reset_configuration
    from .conversation import Conversation
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

# Where each public name lives: (module, name there). `import labkit` imports none of them, so a process
# that needs one part (the practice server, a grading sandbox, the command line) does not pay for the
# rest (openai's client alone is 30 MB and half a second); the first `labkit.X` imports X's module.
_WHERE: dict[str, tuple[str, str]] = {
    **{name: ("errors", name) for name in (
        "AuthError", "BackendError", "BackendUnreachable", "ConfigError", "ImageError", "LabkitError", "ModelNotFound",
        "OutputError", "RateLimited", "RequestRejected", "ServeError", "StreamError", "UnexpectedResponse",
        "UsageError")},
    **{name: ("batch", name) for name in (
        "BatchItem", "BatchResult", "items_from_folder", "load_results", "run_batch", "score_keywords")},
    **{name: ("config", name) for name in (
        "Secret", "Settings", "configure", "load_settings", "mask_key", "reset_configuration")},
    **{name: ("images", name) for name in (
        "ImageInfo", "describe_image", "encode_image", "estimate_image_tokens", "llava_target_size")},
    **{name: ("messages", name) for name in ("assistant", "estimate_tokens", "system", "user")},
    **{name: ("streaming", name) for name in ("ChatStream", "Reply", "chat", "stream_chat")},
    **{name: ("grading", name) for name in ("grade_folder", "list_assignments", "write_student_version")},
    **{name: ("cleanup", name) for name in ("RolePrefixStripper", "strip_role_prefix")},
    "client": ("backend", "client"),
    "doctor": ("checkup", "doctor"),
    "Conversation": ("conversation", "Conversation"),
    "Playground": ("playground", "Playground"),
    "SyncReport": ("workspace", "SyncReport"),
    "sync_workspace": ("workspace", "sync"),
}


def __getattr__(name: str) -> _Any:
    """A public name (or a submodule) of labkit, imported on first use.

    Example:
        >>> import labkit
        >>> labkit.strip_role_prefix("assistant\\nHello")
        'Hello'
    """
    if name in _WHERE:
        module, attribute = _WHERE[name]
        value = getattr(_importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        _name_public_classes()
        return value
    if not name.startswith("_"):
        try:  # `labkit.backend` after a bare `import labkit`, as when every module was imported up front
            return _importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _name_public_classes() -> None:
    """A student's traceback says `labkit.ImageError`, not `labkit.errors.ImageError` (as httpx does): every
    public class of a module imported so far is named after the package. Dataclasses keep their defining
    module: typing.get_type_hints resolves their (string) annotations there."""
    for module, attribute in _WHERE.values():
        loaded = _sys.modules.get(f"{__name__}.{module}")
        value = getattr(loaded, attribute, None)
        if isinstance(value, type) and value.__module__.startswith("labkit.") and not _is_dataclass(value):
            value.__module__ = "labkit"
