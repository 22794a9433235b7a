"""Options of the practice server: dialect, pacing, limits, quirks and injected faults."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from ..errors import ConfigError
from ..i18n import _

__all__ = ["Dialect", "FaultConfig", "PracticeConfig", "parse_faults"]

Dialect = Literal["fastchat", "vllm"]


@dataclass(frozen=True)
class FaultConfig:
    """Faults to inject, all off by default.

    - ``drop_after``: close the connection abruptly after this many content tokens.
    - ``stall_after`` / ``stall_seconds``: stop sending (but keep the connection) after N tokens.
    - ``error_after``: send the dialect's mid-stream error event after N tokens, then ``[DONE]``.
    - ``fail_status``: answer 429 or 503 before streaming.
    - ``times``: the faults above hit only the first N requests (``None``: every request), so a
      retry can be seen to succeed.
    - ``rate_limit``: at most this many requests per minute per API key (429 beyond it).

    Example:
        >>> FaultConfig(drop_after=5).any()
        True
    """

    drop_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 3600.0
    error_after: int | None = None
    fail_status: int | None = None
    times: int | None = None
    rate_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("drop_after", "stall_after", "error_after", "stall_seconds"):
            _check(name, getattr(self, name), low=0)
        for name in ("times", "rate_limit"):
            _check(name, getattr(self, name), low=1)
        if self.fail_status not in (None, 429, 503):
            raise ConfigError(_("fail_status={value} is not a fault status: use 429 or 503").format(
                value=self.fail_status))

    def any(self) -> bool:
        """Whether any fault is switched on.

        Example:
            >>> FaultConfig().any()
            False
        """
        return any(
            v is not None
            for v in (self.drop_after, self.stall_after, self.error_after, self.fail_status, self.rate_limit)
        )


def _check(name: str, value: float | None, *, low: float, low_ok: bool = True) -> None:
    """Refuse a setting that is not a finite number at or above ``low`` (above, when not ``low_ok``)."""
    if value is None:
        return
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < low or (value == low and not low_ok):
        bound = (_("at least {low}") if low_ok else _("above {low}")).format(low=f"{low:g}")
        raise ConfigError(_("The practice server's {name}={value!r} is not usable: give a finite number "
                            "{bound}").format(name=name, value=value, bound=bound))


_FAULT_KEYS = {
    "drop-after": ("drop_after", int),
    "stall-after": ("stall_after", int),
    "stall-seconds": ("stall_seconds", float),
    "error-after": ("error_after", int),
    "status": ("fail_status", int),
}


def parse_faults(spec: str, base: FaultConfig | None = None) -> FaultConfig:
    """Parse a fault spec such as ``"drop-after=5"`` or ``"stall-after=3,stall-seconds=2"``.

    This is what the ``X-Practice-Fault`` request header carries, so a lesson can trigger a fault on
    that one request (``--fault-times`` limits only the server-wide faults). Raises ``ValueError``
    naming the bad part.

    Example:
        >>> parse_faults("error-after=2").error_after
        2
    """
    changes: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in _FAULT_KEYS:
            raise ValueError(f"unknown fault {key!r}: use one of {', '.join(sorted(_FAULT_KEYS))} (e.g. drop-after=5)")
        name, kind = _FAULT_KEYS[key]
        try:
            number = kind(value.strip())
        except ValueError:
            raise ValueError(f"fault {key!r} needs a number, got {value.strip()!r}") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"fault {key!r} must be a finite number ≥ 0, got {value.strip()!r}")
        if name == "fail_status" and number not in (429, 503):
            raise ValueError(f"fault 'status' must be 429 or 503, got {number}")
        changes[name] = number
    return replace(base or FaultConfig(), **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PracticeConfig:
    """Everything the practice server can be told.

    Pacing: the first content token comes ``ttft`` seconds after the request plus the prefill, the
    prompt's tokens (its images' anyres tokens included) read at ``prefill_tokens_per_second`` (plus
    ``ttft_per_image`` per image, 0 by default), then ``tokens_per_second`` tokens a second, like the
    34B model on one card. ``fast=True`` removes every delay (tests, CI).

    Connections: a request's headers must arrive within ``header_timeout`` seconds and its whole body
    within ``body_timeout`` seconds of them; at most ``max_connections`` are open, of which one client
    address holds at most ``max_connections_per_client`` (default: half); ``/health`` is answered even
    at the limit.

    Example:
        >>> PracticeConfig(dialect="vllm", fast=True).paced
        False
    """

    dialect: Dialect = "fastchat"
    model: str = "llava-v1.6-34b"
    base_paths: tuple[str, ...] = ("/v1", "/api/v1")
    allow_non_stream: bool = False
    leak_role_prefix: bool = True
    fast: bool = False
    ttft: float = 0.15
    ttft_per_image: float = 0.0
    prefill_tokens_per_second: float = 4000.0
    tokens_per_second: float = 25.0
    max_images: int = 1
    #: A limit on the request body (no real server has one: None).
    max_body_bytes: int | None = None
    max_model_len: int = 4096
    api_keys: tuple[str, ...] = ()
    faults: FaultConfig = field(default_factory=FaultConfig)
    fault_header: bool = True
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    body_timeout: float = 30.0
    max_connections: int = 2048
    max_connections_per_client: int | None = None

    def __post_init__(self) -> None:
        _check("tokens_per_second", self.tokens_per_second, low=0, low_ok=False)
        _check("prefill_tokens_per_second", self.prefill_tokens_per_second, low=0, low_ok=False)
        for name in ("ttft", "ttft_per_image"):
            _check(name, getattr(self, name), low=0)
        for name in ("header_timeout", "keep_alive_timeout", "body_timeout"):
            _check(name, getattr(self, name), low=0, low_ok=False)
        for name in ("max_body_bytes", "max_model_len", "max_connections", "max_connections_per_client"):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), low=1)
        _check("max_images", self.max_images, low=0)

    @property
    def paced(self) -> bool:
        """Whether answers are paced like the real model.

        Example:
            >>> PracticeConfig().paced
            True
        """
        return not self.fast

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "PracticeConfig":
        """Build a config from ``LABKIT_PRACTICE_*`` variables, then ``overrides``.

        ``LABKIT_PRACTICE_FAST=1`` (CI), ``LABKIT_PRACTICE_DIALECT=vllm``, ``LABKIT_PRACTICE_NO_LEAK=1``.

        Example:
            >>> PracticeConfig.from_env({"LABKIT_PRACTICE_FAST": "1"}).fast
            True
        """
        env = os.environ if env is None else env

        def flag(name: str) -> bool:
            return env.get(name, "").strip().lower() not in ("", "0", "false", "no")

        values: dict[str, object] = {"fast": flag("LABKIT_PRACTICE_FAST")}
        dialect = env.get("LABKIT_PRACTICE_DIALECT", "").strip().lower()
        if dialect:
            if dialect not in ("fastchat", "vllm"):
                raise ValueError(f"LABKIT_PRACTICE_DIALECT={dialect!r} is not a dialect: use 'fastchat' or 'vllm'")
            values["dialect"] = dialect
        if flag("LABKIT_PRACTICE_NO_LEAK"):
            values["leak_role_prefix"] = False
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
