"""The lessons' self-checks: one module per lesson (``lesson00`` … ``lesson07``).

Each ``check_*`` function runs a student's answer on several cases (some hidden), prints ✅ or ❌
with the case that failed and why (never the solution), and returns a :class:`Verdict`. The checks
hold on any backend: where text from a model matters, they use a stand-in they start themselves.

Example:
    >>> from labkit.exercises import lesson07
    >>> bool(lesson07.check_kv_bytes(2 * 60 * 8 * 128 * 2, quiet=True))
    True
"""

from __future__ import annotations

from ._common import StepNotRun, Verdict, need

__all__ = ["StepNotRun", "Verdict", "need"]
