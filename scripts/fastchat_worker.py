"""A FastChat 0.2.36 model worker that answers like the course's vLLM worker, without a model.

Run it with the python of ``.venv-fastchat`` (``bash scripts/setup-fastchat.sh``), next to FastChat's
real ``fastchat.serve.controller`` and ``fastchat.serve.openai_api_server``; ``scripts/test-fastchat.sh``
starts all three. It registers with the controller and sends heartbeats (FastChat's own
``BaseModelWorker``), serves FastChat's own worker routes (``fastchat.serve.base_model_worker.app``:
``/worker_generate_stream``, ``/worker_generate``, ``/count_token``, ``/model_details``,
``/worker_get_conv_template``, ``/worker_get_status``), and streams the way 0.2.36's ``vllm_worker``
does:

- ``\\0``-terminated JSON objects ``{"text", "error_code", "usage", "cumulative_logprob",
  "finish_reason"}`` whose ``text`` is the whole answer so far (cumulative), one per token;
- the last output sent twice, first with ``finish_reason`` null, then with ``"stop"`` or ``"length"``
  (``max_new_tokens`` reached), so the API server emits its empty finish chunk;
- the answer begins with the ``assistant\\n`` the course's llava-v1.6-34b leaks;
- ``"stop"`` strings cut the answer as vLLM's stop handling does;
- the engine's context counts images as their anyres tokens (FastChat's own length check sees only the
  text): an image-heavy prompt that passes the check gets what is left, or an empty answer with "length";
- a prompt holding ``[[worker-error]]`` (or ``[[worker-error:N]]``) gets N tokens (default 3) and then
  the ``{"text": …, "error_code": 50002}`` a CUDA out-of-memory gives FastChat's workers.

The conversation template is ``vicuna_v1.1``: what 0.2.36's ``LlavaAdapter`` picks for llava paths.
Images arrive as data URLs in ``params["images"]``. The answer text is the practice server's
deterministic "model" (``labkit/practice/brain.py`` and ``vision.py``, loaded by file path so nothing
of labkit's client side, nor labkit's package ``__init__``, is imported): meaningful enough for the
lessons (sizes, colours, Chinese for Chinese questions). Only the content comes from there; every
byte of the protocol is this file's and FastChat's.

Usage: python scripts/fastchat_worker.py --controller-address http://127.0.0.1:21001 --port 21002
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import math
import re
import sys
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastchat.constants import SERVER_ERROR_MSG, ErrorCode
from fastchat.conversation import Conversation, get_conv_template
from fastchat.serve import base_model_worker
from fastchat.serve.base_model_worker import BaseModelWorker

REPO = Path(__file__).resolve().parents[1]
LEAK = "assistant\n"
ERROR_MARK = re.compile(r"\[\[worker-error(?::(\d+))?\]\]")
IMAGE_PLACEHOLDER = "$$<image>$$"  # fastchat.constants.IMAGE_PLACEHOLDER_STR in 0.2.36


def load_practice_model() -> tuple[Any, Any]:
    """labkit/practice/brain.py and vision.py as a package of their own (no labkit/__init__.py)."""
    package = types.ModuleType("_practice_content")
    package.__path__ = [str(REPO / "labkit" / "practice")]  # type: ignore[attr-defined]
    sys.modules[package.__name__] = package
    return importlib.import_module("_practice_content.brain"), importlib.import_module("_practice_content.vision")


brain, vision = load_practice_model()


class _Turns:
    """The pieces of a vicuna_v1.1 prompt: ``{system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT:``."""

    def __init__(self, prompt: str, conv: Conversation) -> None:
        user, assistant = conv.roles
        parts = prompt.split(f"{user}: ")
        self.system = parts[0].strip()
        self.default_system = conv.system_message.strip()
        self.questions = [p.split(f"{conv.sep}{assistant}:")[0] for p in parts[1:]]

    @property
    def question(self) -> str:
        return self.questions[-1].replace(IMAGE_PLACEHOLDER, "") if self.questions else ""

    @property
    def custom_system(self) -> str:
        return "" if self.system == self.default_system else self.system


class CourseWorker(BaseModelWorker):
    """FastChat's BaseModelWorker with vllm_worker's streaming and the practice model's answers."""

    def __init__(self, *args: Any, context_len: int, token_delay: float, max_images: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context_len = context_len
        self.max_images = max_images
        self.token_delay = token_delay
        self.init_heart_beat()

    def make_conv_template(self, conv_template: str | None = None, model_path: str | None = None) -> Conversation:
        # BaseModelWorker's version imports fastchat.model.model_adapter, which needs torch.
        return get_conv_template(conv_template or "vicuna_v1.1")

    def count_token(self, params: dict[str, Any]) -> dict[str, int]:
        """The prompt's text tokens (the image placeholders count as text, as FastChat's check does)."""
        return {"count": brain.count_text_tokens(params["prompt"]), "error_code": 0}

    # ------------------------------------------------------------------ the answer

    def _outputs(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """vllm_worker's outputs for one request: cumulative text, the last one repeated with its reason."""
        prompt: str = params["prompt"]
        images = params.get("images") or []
        max_new_tokens = int(params.get("max_new_tokens") or 256)
        stops = [s for s in (params.get("stop") or []) if s]
        self.call_ct += 1

        # vllm_worker reads the options with float(...): null fails; vLLM's SamplingParams refuses NaN.
        temperature, top_p = float(params.get("temperature", 0.7)), float(params.get("top_p", 1.0))
        if math.isnan(temperature) or math.isnan(top_p):
            raise ValueError(f"temperature {temperature} / top_p {top_p}: NaN is not a sampling option")
        if len(images) > self.max_images:  # the engine's --limit-mm-per-prompt, relayed as a worker error
            yield {"text": f"{SERVER_ERROR_MSG}\n\n(At most {self.max_images} image(s) may be provided in one "
                           "prompt.)", "error_code": ErrorCode.INTERNAL_ERROR}
            return
        try:
            facts = tuple(vision.analyse(vision.decode_data_url(url)) for url in images)
        except (vision.ImageDecodeError, ValueError) as exc:
            yield {"text": f"{SERVER_ERROR_MSG}\n\n({exc})", "error_code": ErrorCode.INTERNAL_ERROR}
            return
        # The engine counts each image as its anyres feature tokens (FastChat's check saw text only): it
        # generates at most what is left of the context, and nothing when the prompt already fills it.
        prompt_tokens = brain.count_text_tokens(prompt) + sum(vision.image_tokens(f.width, f.height) for f in facts)
        max_new_tokens = max(0, min(max_new_tokens, self.context_len - prompt_tokens))
        turns = _Turns(prompt, self.conv)
        seed = hashlib.sha256(json.dumps([prompt, images]).encode()).hexdigest()[:16]
        question = ERROR_MARK.sub("", turns.question).strip()
        # FastChat passes the request's sampling options (its request default: temperature 0.7), never a seed.
        answer = brain.compose_answer(brain.Prompt(
            question, facts, len(turns.questions), turns.custom_system, seed,
            temperature=temperature, top_p=top_p))
        tokens = brain.split_tokens(answer) or [""]
        tokens[0] = LEAK + tokens[0]  # the leaked role prefix arrives glued to the first token
        if max_new_tokens == 0:
            empty = {"text": "", "error_code": 0, "cumulative_logprob": [0.0],
                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}}
            yield {**empty, "finish_reason": None}
            yield {**empty, "finish_reason": "length"}
            return
        error = ERROR_MARK.search(prompt)
        error_after = int(error.group(1) or 3) if error else None

        text, reason = "", None
        for i, token in enumerate(tokens):
            if error_after is not None and i >= error_after:
                yield {"text": f"{SERVER_ERROR_MSG}\n\n(CUDA out of memory)",
                       "error_code": ErrorCode.CUDA_OUT_OF_MEMORY}
                return
            text += token
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
            elif i + 1 == len(tokens):
                reason = "stop"
            elif i + 1 >= max_new_tokens:
                reason = "length"
            ret = {
                "text": text,
                "error_code": 0,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": i + 1,
                          "total_tokens": prompt_tokens + i + 1},
                "cumulative_logprob": [0.0],
                "finish_reason": reason,
            }
            if reason is not None:
                yield {**ret, "finish_reason": None}  # vllm_worker emits the finished output twice
                yield ret
                return
            yield ret

    async def generate_stream_gate(self, params: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            for ret in self._outputs(params):
                yield (json.dumps(ret) + "\0").encode()
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
        except Exception:
            # Like vllm_worker, a bad option (temperature null or NaN) crashes the stream, and the front drops
            # the connection. FastChat releases the concurrency slot in a background task that a crashed
            # stream never runs: release it here, so that a test run does not wedge the worker.
            if self.semaphore is not None:
                self.semaphore.release()
            raise

    def generate_gate(self, params: dict[str, Any]) -> dict[str, Any]:
        outputs = list(self._outputs(params))
        return outputs[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=21002)
    parser.add_argument("--worker-address", default=None, help="default: http://HOST:PORT")
    parser.add_argument("--controller-address", default="http://127.0.0.1:21001")
    parser.add_argument("--model-names", default="llava-v1.6-34b", help="comma-separated names served")
    parser.add_argument("--model-path", default="liuhaotian/llava-v1.6-34b")
    parser.add_argument("--conv-template", default="vicuna_v1.1")
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--limit-worker-concurrency", type=int, default=5)
    parser.add_argument("--limit-images", type=int, default=1, help="images per prompt (vLLM's default for LLaVA)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed outputs")
    args = parser.parse_args(argv)

    CourseWorker(
        args.controller_address,
        args.worker_address or f"http://{args.host}:{args.port}",
        uuid.uuid4().hex[:8],
        args.model_path,
        args.model_names.split(","),
        args.limit_worker_concurrency,
        conv_template=args.conv_template,
        multimodal=True,
        context_len=args.context_length,
        token_delay=args.token_delay,
        max_images=args.limit_images,
    )
    uvicorn.run(base_model_worker.app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
