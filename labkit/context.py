"""The backend's context length, where it says: vLLM lists ``max_model_len`` with each model in
``GET /v1/models`` (FastChat's list has no such field).

Example:
    >>> card = {"id": "llava-v1.6-34b", "object": "model", "max_model_len": 2048}
    >>> context_length_of([card], "llava-v1.6-34b")
    2048
"""

from __future__ import annotations

import threading
from typing import Any

from . import backend
from .config import Settings, load_settings

__all__ = ["context_length_of", "backend_context_length"]

_lock = threading.Lock()
_known: dict[tuple[str, str], int | None] = {}


def context_length_of(cards: list[Any], model: str) -> int | None:
    """``max_model_len`` of ``model``'s card in a ``/v1/models`` list (of the only card, if the list has one).

    Example:
        >>> context_length_of([{"id": "m", "max_model_len": 4096}], "other")
        4096
        >>> context_length_of([{"id": "m"}], "m") is None
        True
    """
    dicts = [c for c in cards if isinstance(c, dict)]
    card = next((c for c in dicts if c.get("id") == model), dicts[0] if len(dicts) == 1 else None)
    value = card.get("max_model_len") if card else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def backend_context_length(settings: Settings | None = None, *, client: Any = None) -> int | None:
    """The configured backend's context length for the configured model, or None where it does not say
    (FastChat) or cannot be asked. Asked once per base URL and model.

    Example:
        >>> backend_context_length()  # doctest: +SKIP
        2048
    """
    settings = settings or load_settings()
    client = client or backend.client(settings)
    key = (str(client.base_url), settings.model)
    with _lock:
        if key in _known:
            return _known[key]
    try:
        raw = client.models.with_raw_response.list()
        cards = raw.http_response.json().get("data")
        found = context_length_of(cards if isinstance(cards, list) else [], settings.model)
    except Exception:  # not reachable, not a model list: the first request will say what is wrong
        return None
    with _lock:
        _known[key] = found
    return found
