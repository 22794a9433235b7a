"""Self-checks of lesson 07 (serving with vLLM): KV-cache bytes per token, and how many full-length
sequences fit on a card (memory in GiB, as cards are sold: an "80 GB" H100 has 80 GiB).

Example:
    >>> bool(check_kv_bytes(None, quiet=True))
    False
"""

from __future__ import annotations

from collections.abc import Callable

from ..i18n import _
from ._common import N_, Checker, Verdict, call_student, guarded, need, not_callable

__all__ = ["need", "GIB", "check_kv_bytes", "check_max_sequences"]

GIB = 2**30


@guarded(1)
def check_kv_bytes(kv_bytes: object, *, quiet: bool = False) -> Verdict:
    """Exercise 1: the KV cache of one token of llava-v1.6-34b (60 layers, 8 KV heads, head size 128, bf16), in bytes.

    Example:
        >>> bool(check_kv_bytes(2 * 60 * 8 * 128 * 2, quiet=True))
        True
    """
    c = Checker(1, quiet=quiet)
    truth = 2 * 60 * 8 * 128 * 2
    if not isinstance(kv_bytes, (int, float)) or isinstance(kv_bytes, bool):
        c.fail(_("kv_bytes should be a number of bytes, but it is {got!r}").format(got=kv_bytes))
    elif kv_bytes == truth / 2:
        c.fail(_("kv_bytes is half of what it should be: every layer keeps two tensors per token"))
    elif kv_bytes == truth * 8:
        c.fail(_("kv_bytes looks like bits, not bytes"))
    elif kv_bytes in (truth / 1024, truth / 1000, truth / 2**20):
        c.fail(_("kv_bytes should be in bytes, not KiB, KB or MiB"))
    elif kv_bytes != truth:
        c.fail(_("kv_bytes = {got} is not right: count what each layer keeps for one token, and how many bytes "
                 "one bf16 number takes").format(got=kv_bytes))
    return c.done()


# (case name, arguments, expected)
_CASES: list[tuple[str, dict[str, float], int]] = [
    (N_("llava-v1.6-34b on one 80 GiB card"),
     dict(gpu_gib=80, params_billion=34.8, layers=60, kv_heads=8, head_dim=128), 7),
    (N_("llava-v1.6-mistral-7b on a 24 GiB card"),
     dict(gpu_gib=24, params_billion=7.6, layers=32, kv_heads=8, head_dim=128), 14),
    (N_("34B on two 80 GiB cards (160 GiB in all)"),
     dict(gpu_gib=160, params_billion=34.8, layers=60, kv_heads=8, head_dim=128), 84),
    (N_("34B on a 48 GiB card: the weights do not fit"),
     dict(gpu_gib=48, params_billion=34.8, layers=60, kv_heads=8, head_dim=128), 0),
    (N_("7B on an 80 GiB card, 2,048-token context"),
     dict(gpu_gib=80, params_billion=7.6, layers=32, kv_heads=8, head_dim=128, context=2048), 231),
    (N_("a toy model (1 layer, 1 KV head, no weights) on a card of just over 1 GiB, all of it used"),
     dict(gpu_gib=1.0001, params_billion=0, layers=1, kv_heads=1, head_dim=128, utilization=1.0), 512),
    (N_("7B on a 48 GiB card that vLLM may use only 60 % of"),
     dict(gpu_gib=48, params_billion=7.6, layers=32, kv_heads=8, head_dim=128, utilization=0.6), 29),
]


def _fits(gpu_gib: float, params_billion: float, layers: int, kv_heads: int, head_dim: int, context: int = 4096,
          utilization: float = 0.9, *, unit: float = GIB, tensors: int = 2, share_of: str = "card",
          rounding: str = "floor", least: int = 0) -> float:
    """What fits, computed right (the defaults) or with one of the mistakes students make."""
    weights = params_billion * 1e9 * 2 / unit
    per_sequence = tensors * layers * kv_heads * head_dim * 2 * context / unit
    free = {"card": gpu_gib * utilization - weights, "free": (gpu_gib - weights) * utilization,
            "ignored": gpu_gib - weights}[share_of]
    n = free / per_sequence
    whole = int(n // 1) if rounding == "floor" else round(n)
    return max(least, whole)


# (the mistake's message, how it computes) in the order they are tried
_MISTAKES: list[tuple[str, dict[str, object]]] = [
    (N_("{case}: {got} is what fits when the whole card is used. vLLM takes only the utilization share of the "
        "card's memory: is the utilization argument used?"), {"share_of": "ignored"}),
    (N_("{case}: {got} takes the utilization share of what is left after the weights. utilization is the share of "
        "the whole card that vLLM may use; the weights come out of that share"), {"share_of": "free"}),
    (N_("{case}: {got} is not right when the weights do not fit: then no sequence fits at all, and the answer is 0"),
     {"least": 1}),
    (N_("{case}: {got} is the count with only one tensor per layer: each layer keeps two (K and V) for every token"),
     {"tensors": 1}),
    (N_("{case}: {got} is rounded to the nearest whole number, but part of a sequence does not fit: round down"),
     {"rounding": "round"}),
    (N_("{case}: {got} mixes units: are the weights and the cache in the same unit as the card (GiB = 2**30 bytes, "
        "not 10**9)?"), {"unit": 1e9}),
]


@guarded(2)
def check_max_sequences(max_sequences: Callable[..., int], *, quiet: bool = False) -> Verdict:
    """Exercise 2: ``max_sequences(gpu_gib, params_billion, layers, kv_heads, head_dim, context=4096,
    utilization=0.9)``: how many full ``context``-token sequences fit in the KV cache (bf16 weights
    and cache), as a whole number, never negative.

    Example:
        >>> bool(check_max_sequences(lambda **kw: 7, quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    if not_callable(c, max_sequences, "max_sequences"):
        return c.done()
    for name, kwargs, expected in _CASES:
        case = _("case “{name}”").format(name=_(name))
        ok, got = call_student(c, case, max_sequences, **kwargs)
        if not ok:
            continue
        if not isinstance(got, int) or isinstance(got, bool):
            c.fail(_("{case}: return a whole number of sequences (int), got {got!r}").format(case=case, got=got))
        elif got < 0:
            c.fail(_("{case}: {got} sequences is negative: when the weights leave no room, none fit")
                   .format(case=case, got=got))
        elif got != expected:
            mistakes = [message for message, how in _MISTAKES
                        if _fits(**kwargs, **how) == got]  # type: ignore[arg-type]
            if mistakes:
                c.fail(_(mistakes[0]).format(case=case, got=got))
            else:
                c.fail(_("{case}: {got} is {direction}. Count again: the bf16 weights (2 bytes per parameter), the "
                         "KV cache of one full sequence, and the share of the card that vLLM may use").format(
                    case=case, got=got, direction=_("too many") if got > expected else _("too few")))
    return c.done()
