"""The mutation floors (scripts/mutants.py; the whole table is `make mutants`).

Here, within `make test`'s budget: the self-checks that need no backend are run on all their mutants
and must stay at or above their floor; for every exercise the committed list of equivalent mutants
must name mutants that still exist, each with a reason."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from exercise_catalog import EXERCISES
from lab_catalog import labs
from support import ROOT


def _load_mutants():  # registered by name: its dataclasses and its worker processes look the module up
    if "mutants" not in sys.modules:
        spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["mutants"] = module
        spec.loader.exec_module(module)
    return sys.modules["mutants"]


mutants = _load_mutants()

FAST = ("03-", "05-check_scorer", "07-")  # pure Python: all their mutants in a few seconds


@pytest.mark.parametrize("prefix", FAST)
def test_fast_self_checks_stay_at_or_above_their_floor(prefix: str) -> None:
    rows, notes = mutants.measure(prefix, jobs=2)
    assert rows and not notes, notes
    for row in rows:
        assert row.mutants >= 2, row.exercise
        assert row.score >= row.goal == mutants.SELF_CHECK_GOAL, (
            f"{row.exercise}: {row.score:.1%} < {row.goal:.0%}; survivors:\n"
            + "\n".join(m.change(next(e for e in EXERCISES if e.name == row.exercise).solution) for m in row.survivors))


def test_every_listed_equivalent_mutant_exists_and_has_a_reason() -> None:
    listed = mutants.read_equivalent()
    by_exercise = {e.name: {m.ident for m in mutants.mutants_of(e.name, e.solution)} for e in EXERCISES}
    by_exercise |= {q.key: {m.ident for m in mutants.mutants_of(q.key, q.solution)}
                    for lab in labs() for q in lab.questions}
    for (exercise, ident), reason in listed.items():
        assert exercise in by_exercise, exercise
        assert ident in by_exercise[exercise], f"{exercise} {ident}: no such mutant (the solution changed?)"
        assert len(reason) > 10, (exercise, ident)


def test_every_exercise_has_mutants() -> None:
    """A solution that no operator can change would make its score meaningless."""
    empty = [e.name for e in EXERCISES if not mutants.mutants_of(e.name, e.solution)]
    empty += [q.key for lab in labs() for q in lab.questions if not mutants.mutants_of(q.key, q.solution)]
    assert not empty, empty


def test_listed_prints_each_listed_mutant_with_its_change_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    """`--listed` is how the equivalent list is reviewed: every entry with the lines it changes."""
    listed = {ident: reason for (exercise, ident), reason in mutants.read_equivalent().items()
              if exercise.startswith("07-")}
    assert mutants.main(["--listed", "--only", "07-"]) == 0
    out = capsys.readouterr().out
    assert listed
    for ident, reason in listed.items():
        assert f"{ident}  ({reason})" in out
    changed = [line.strip() for line in out.splitlines() if line.strip().startswith(("-", "+"))]
    assert len(changed) >= 2 * len(listed)
