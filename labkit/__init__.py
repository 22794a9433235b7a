"""labkit: helpers for the multimodal-LLM course (llava-v1.6-34b behind an OpenAI-compatible API).

Example:
    >>> import labkit
    >>> reply = labkit.chat("What is in this image?", image="images/chelsea.jpg")  # doctest: +SKIP
"""

from .batch import BatchItem, BatchResult, items_from_folder, load_results, run_batch, score_keywords
from .cleanup import RolePrefixStripper, strip_role_prefix
from .config import Settings, client, configure, load_settings, mask_key, reset_configuration
from .errors import (
    AuthError,
    BackendError,
    BackendUnreachable,
    ConfigError,
    ImageError,
    LabkitError,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServeError,
    StreamError,
)
from .grading import grade_folder, list_assignments, write_student_version
from .images import ImageInfo, describe_image, encode_image, estimate_image_tokens, llava_target_size
from .messages import Conversation, assistant, estimate_tokens, system, user
from .streaming import ChatStream, Reply, chat, stream_chat

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BatchItem",
    "BatchResult",
    "BackendError",
    "BackendUnreachable",
    "ChatStream",
    "ConfigError",
    "Conversation",
    "ImageError",
    "ImageInfo",
    "LabkitError",
    "ModelNotFound",
    "RateLimited",
    "Reply",
    "RequestRejected",
    "RolePrefixStripper",
    "ServeError",
    "Settings",
    "StreamError",
    "assistant",
    "chat",
    "client",
    "configure",
    "describe_image",
    "encode_image",
    "estimate_image_tokens",
    "estimate_tokens",
    "grade_folder",
    "items_from_folder",
    "list_assignments",
    "load_results",
    "llava_target_size",
    "load_settings",
    "mask_key",
    "reset_configuration",
    "run_batch",
    "score_keywords",
    "stream_chat",
    "strip_role_prefix",
    "system",
    "user",
    "write_student_version",
]
