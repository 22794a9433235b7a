"""The bytes the practice server sends, in FastChat 0.2.36's and vLLM 0.32's exact framing.

Written against the real captures (shared/captures in the course repo): FastChat serialises with
Python's default separators (``", "`` and ``": "``) and raw UTF-8; its first chunk has no
``object``/``created``; errors are HTTP 400 ``{"object":"error","message","code"}``. vLLM serialises
compactly, sends ``"content":""`` in the role chunk, ``logprobs``/``token_ids``/``stop_reason`` keys,
the last token inside the finish chunk, a usage chunk with ``"choices":[]`` when asked, and
``{"error":{…}}`` bodies with the HTTP status.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

# Starlette renders JSONResponse compactly with raw UTF-8, as both real servers do for whole bodies.
from starlette.responses import JSONResponse, Response

__all__ = ["FastChatDialect", "VLLMDialect", "dialect_for", "content_event", "DONE"]

DONE = b"data: [DONE]\n\n"
_B57 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _event(payload: dict[str, Any], compact: bool) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=separators).encode("utf-8") + b"\n\n"


_SLOT = "\x00slot\x00"


def _frame(payload: dict[str, Any], compact: bool) -> tuple[bytes, bytes]:
    """Split an event around the text slot, so each token costs one ``json.dumps`` of a string."""
    head, tail = _event(payload, compact).split(json.dumps(_SLOT).encode())
    return head, tail


def content_event(frame: tuple[bytes, bytes], text: str) -> bytes:
    """A content chunk: the frame around the token's JSON string (identical to dumping the whole)."""
    return frame[0] + json.dumps(text, ensure_ascii=False).encode("utf-8") + frame[1]


def _encodable(message: str) -> str:
    """The message with any lone surrogate (echoed from a request) written as its escape, so it encodes."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _usage(usage: dict[str, int]) -> dict[str, int]:
    return {"prompt_tokens": usage["prompt_tokens"], "total_tokens": usage["total_tokens"],
            "completion_tokens": usage["completion_tokens"]}


def _permission(pid: str, now: int, *, search_indices: bool) -> dict[str, Any]:
    return {
        "id": pid, "object": "model_permission", "created": now, "allow_create_engine": False,
        "allow_sampling": True, "allow_logprobs": True, "allow_search_indices": search_indices,
        "allow_view": True, "allow_fine_tuning": False, "organization": "*", "group": None, "is_blocking": False,
    }


class FastChatDialect:
    """FastChat 0.2.36 ``openai_api_server`` framing."""

    name = "fastchat"
    #: FastChat sends every token as its own chunk and the finish reason in an empty delta.
    last_token_in_finish = False

    @staticmethod
    def new_id() -> str:
        return "chatcmpl-" + "".join(secrets.choice(_B57) for _ in range(22))

    def role_chunk(self, cid: str, created: int, model: str, index: int = 0) -> bytes:
        return _event({"id": cid, "model": model,
                       "choices": [{"index": index, "delta": {"role": "assistant"}, "finish_reason": None}]}, False)

    def content_frame(self, cid: str, created: int, model: str, index: int = 0) -> tuple[bytes, bytes]:
        """The bytes before and after the JSON string of a content chunk's text."""
        return _frame({"id": cid, "model": model,
                       "choices": [{"index": index, "delta": {"content": _SLOT}, "finish_reason": None}]}, False)

    def finish_chunk(self, cid: str, created: int, model: str, reason: str, text: str | None, with_usage: bool,
                     index: int = 0) -> bytes:
        return _event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": index, "delta": {}, "finish_reason": reason}]}, False)

    def usage_chunk(self, cid: str, created: int, model: str, usage: dict[str, int]) -> bytes | None:
        return None  # FastChat ignores stream_options

    def stream_error(self, message: str, code: int) -> bytes:
        return _event({"text": message, "error_code": code}, False)

    def error(self, status: int, message: str, *, code: int, kind: str = "BadRequestError",
              param: str | None = None) -> Response:
        # FastChat answers every request error with HTTP 400; only the front end's 413/429/503 differ.
        http = 400 if status in (400, 404, 422) else status
        message = _encodable(message)
        if kind == "detail":  # FastAPI's own error, before FastChat sees the request
            return JSONResponse({"detail": message}, status_code=http)
        return JSONResponse({"object": "error", "message": message, "code": code}, status_code=http)

    def auth_error(self) -> Response:
        return JSONResponse({"detail": {"error": {"message": "", "type": "invalid_request_error", "param": None,
                                                  "code": "invalid_api_key"}}}, status_code=401)

    def model_card(self, model: str, max_model_len: int) -> dict[str, Any]:
        now = int(time.time())
        perm = "modelperm-" + "".join(secrets.choice(_B57) for _ in range(22))
        return {"id": model, "object": "model", "created": now, "owned_by": "fastchat", "root": model,
                "parent": None, "permission": [_permission(perm, now, search_indices=True)]}

    def completion(self, cid: str, created: int, model: str, text: str, reason: str,
                   usage: dict[str, int], n: int = 1) -> dict[str, Any]:
        # FastChat asks the worker n times for the same prompt and adds up the usage.
        choice = {"message": {"role": "assistant", "content": text}, "finish_reason": reason}
        return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": i, **choice} for i in range(n)],
                "usage": _usage({k: v * n for k, v in usage.items()})}


class VLLMDialect:
    """vLLM 0.32 ``vllm.entrypoints.openai.api_server`` framing."""

    name = "vllm"
    last_token_in_finish = True

    def __init__(self) -> None:
        self.fingerprint = "vllm-0.32.0-" + secrets.token_hex(4)

    @staticmethod
    def new_id() -> str:
        return "chatcmpl-" + secrets.token_hex(8)

    @staticmethod
    def _head(cid: str, created: int, model: str) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

    def role_chunk(self, cid: str, created: int, model: str, index: int = 0) -> bytes:
        return _event({**self._head(cid, created, model),
                       "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                    "finish_reason": None}],
                       "prompt_token_ids": None, "prompt_text": None}, True)

    def content_frame(self, cid: str, created: int, model: str, index: int = 0) -> tuple[bytes, bytes]:
        """The bytes before and after the JSON string of a content chunk's text."""
        return _frame({**self._head(cid, created, model),
                       "choices": [{"index": index, "delta": {"content": _SLOT}, "logprobs": None,
                                    "finish_reason": None, "token_ids": None}]}, True)

    def finish_chunk(self, cid: str, created: int, model: str, reason: str, text: str | None, with_usage: bool,
                     index: int = 0) -> bytes:
        payload: dict[str, Any] = {**self._head(cid, created, model),
                                   "choices": [{"index": index, "delta": {"content": text or ""}, "logprobs": None,
                                                "finish_reason": reason, "stop_reason": None, "token_ids": None}]}
        if not with_usage:
            payload["system_fingerprint"] = self.fingerprint
        return _event(payload, True)

    def usage_chunk(self, cid: str, created: int, model: str, usage: dict[str, int]) -> bytes | None:
        return _event({**self._head(cid, created, model), "choices": [], "usage": _usage(usage),
                       "system_fingerprint": self.fingerprint}, True)

    def stream_error(self, message: str, code: int) -> bytes:
        status = 500 if code >= 500 else 400
        kind = "InternalServerError" if status == 500 else "BadRequestError"
        return _event({"error": {"message": message, "type": kind, "param": None, "code": status}}, True)

    def error(self, status: int, message: str, *, code: int, kind: str = "BadRequestError",
              param: str | None = None) -> Response:
        message = _encodable(message)
        if kind == "detail":  # FastAPI's own error, before vLLM sees the request
            return JSONResponse({"detail": message}, status_code=status)
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                            status_code=status)

    def auth_error(self) -> Response:
        return JSONResponse({"error": "Unauthorized"}, status_code=401)

    def model_card(self, model: str, max_model_len: int) -> dict[str, Any]:
        now = int(time.time())
        return {"id": model, "object": "model", "created": now, "owned_by": "vllm", "root": model, "parent": None,
                "max_model_len": max_model_len,
                "permission": [_permission("modelperm-" + secrets.token_hex(8), now, search_indices=False)]}

    def completion(self, cid: str, created: int, model: str, text: str, reason: str,
                   usage: dict[str, int], n: int = 1) -> dict[str, Any]:
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None,
                                                  "annotations": None, "audio": None, "function_call": None,
                                                  "reasoning": None},
                         "logprobs": None, "finish_reason": reason, "stop_reason": None, "token_ids": None}],
            "service_tier": None, "system_fingerprint": self.fingerprint,
            "usage": {**_usage(usage), "prompt_tokens_details": None, "completion_tokens_details": None},
            "prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None,
        }


def dialect_for(name: str) -> FastChatDialect | VLLMDialect:
    """The framing for ``name`` (``"fastchat"`` or ``"vllm"``).

    Example:
        >>> dialect_for("vllm").name
        'vllm'
    """
    if name == "vllm":
        return VLLMDialect()
    if name == "fastchat":
        return FastChatDialect()
    raise ValueError(f"unknown dialect {name!r}: use 'fastchat' or 'vllm'")
