"""Resources and visibility per submission: a fork bomb costs only its own cells, two runs at once see
nothing of each other or of the host's processes, and the process-only fallback must be asked for by
name and still keeps the grader's keys from the submissions."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="grading needs otter-grader: pip install -e '.[test]'")

from grading_support import Maker, rows, write  # noqa: E402

from labkit.grading import GradingError, Limits, grade_folder, isolation  # noqa: E402
from labkit.grading import grade as grade_module  # noqa: E402

pytestmark = pytest.mark.timeout(300)
namespaces = pytest.mark.skipif(isolation() == "process", reason="needs Linux namespaces (root or user namespaces)")

ASSIGNMENT = "multimodal-request"
SECRET = "sk-labkit-isolation-test-9f3c"

LOOK_AROUND = r'''
import os
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
lines = []
for pid in pids:
    try:
        lines.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")[:60])
    except OSError:
        pass
for place in ("/run/lock", "/dev/shm", "/var/tmp"):
    try:
        lines.append(place + ":" + ",".join(os.listdir(place)))
        open(os.path.join(place, "planted-by-a-submission"), "w").write("x")
    except OSError as exc:
        lines.append(place + "!" + type(exc).__name__)
raise RuntimeError(f"UID {os.getuid()} PIDS {len(pids)} | " + " | ".join(lines))
'''

STEAL = r'''
import glob
found = []
for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
    try:
        if b"''' + SECRET[:10] + r'''" in open(path, "rb").read():
            found.append(path + " " + open(path, "rb").read().decode(errors="replace"))
    except OSError:
        pass
import os
found += [f"{k}={v}" for k, v in os.environ.items() if "KEY" in k or "OPENAI" in k]
raise RuntimeError("STOLEN " + " ".join(found) if found else "NOTHING FOUND")
'''

FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"


@pytest.fixture(scope="module")
def make(tmp_path_factory: pytest.TempPathFactory) -> Maker:
    return Maker(ASSIGNMENT, tmp_path_factory.mktemp("dist"))


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    return subprocess.Popen([sys.executable, "-m", "labkit", *args], env={**clean, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@namespaces
def test_a_fork_bomb_costs_only_its_own_cells(tmp_path: Path, make: Maker) -> None:
    subs = tmp_path / "subs"
    bomb = make.full()
    bomb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                             "source": FORK_BOMB})
    write(subs / "bomb.ipynb", bomb)
    write(subs / "honest.ipynb", make.full())
    started = time.monotonic()
    summary = grade_folder(ASSIGNMENT, subs, tmp_path / "g.csv", limits=Limits(wall=150.0, cell=5.0),
                           jobs=2, progress=False)
    table = rows(tmp_path / "g.csv")
    assert table["honest"]["total"] == "16"
    assert table["bomb"]["total"] == "16" and table["bomb"]["status"] == "errors"  # its correct answers still score
    feedback = (tmp_path / "g-feedback" / "bomb.md").read_text(encoding="utf-8")
    assert "第 2 个单元格运行超时" in feedback
    assert time.monotonic() - started < 200
    assert {o.student: o.seconds for o in summary.graded}["honest"] < 100


@namespaces
def test_two_runs_at_once_see_nothing_of_each_other_or_the_host(tmp_path: Path, make: Maker) -> None:
    for run in ("a", "b"):
        write(tmp_path / run / "subs" / f"look-{run}.ipynb", make.with_cells_at_end([LOOK_AROUND]))
    other = _cli(["grade", ASSIGNMENT, str(tmp_path / "b" / "subs"), "-o", str(tmp_path / "b" / "g.csv")],
                 {"LABKIT_LANG": "en"})
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(summary=grade_folder(
        ASSIGNMENT, tmp_path / "a" / "subs", tmp_path / "a" / "g.csv", limits=Limits(cell=10.0), progress=False)))
    thread.start()
    out, err = other.communicate(timeout=280)
    thread.join(timeout=280)
    assert other.returncode == 0, err[-2000:]
    seen = {}
    for run in ("a", "b"):
        text = (tmp_path / run / "g-feedback" / f"look-{run}.md").read_text(encoding="utf-8")
        line = next(line for line in text.splitlines() if "UID " in line)
        seen[run] = line
        assert "pytest" not in line and "labkit grade" not in line and "labkit.cli" not in line, line
        assert int(line.split("PIDS ")[1].split()[0]) <= 8, line  # its own PID namespace: a handful of processes
        for place in ("/run/lock", "/dev/shm", "/var/tmp"):
            assert not os.path.exists(os.path.join(place, "planted-by-a-submission")), place
        assert rows(tmp_path / run / "g.csv")[f"look-{run}"]["total"] == "16"
    uid_a, uid_b = (seen[r].split("UID ")[1].split()[0] for r in ("a", "b"))
    if os.geteuid() == 0:
        assert uid_a != uid_b and int(uid_a) >= 960_000 and int(uid_b) >= 960_000


def test_process_isolation_must_be_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(grade_module.jail, "isolation", lambda: "process")
    monkeypatch.delenv("LABKIT_GRADE_ISOLATION", raising=False)
    (tmp_path / "subs").mkdir()
    with pytest.raises(GradingError, match="LABKIT_GRADE_ISOLATION=process"):
        grade_folder(ASSIGNMENT, tmp_path / "subs", tmp_path / "g.csv", progress=False)
    assert not (tmp_path / "g.csv").exists()
    monkeypatch.setenv("LABKIT_GRADE_ISOLATION", "process")
    if os.geteuid() == 0 and grade_module.jail._closed_ancestors(grade_module._needed_paths()):
        with pytest.raises(GradingError, match="other users cannot enter"):  # never runs a submission as root
            grade_folder(ASSIGNMENT, tmp_path / "subs", tmp_path / "g.csv", progress=False)


@pytest.mark.skipif(os.geteuid() == 0 and bool(__import__("labkit.grading.jail").grading.jail._closed_ancestors(
    [sys.prefix, sys.base_prefix])), reason="as root, process isolation needs a Python environment other users can "
                                            "enter (this one is in a closed folder, e.g. /root)")
def test_process_isolation_warns_and_keeps_the_keys(tmp_path: Path, make: Maker) -> None:
    write(tmp_path / "subs" / "thief.ipynb", make.with_cells_at_end([STEAL]))
    run = _cli(["grade", ASSIGNMENT, str(tmp_path / "subs"), "-o", str(tmp_path / "g.csv")],
               {"LABKIT_GRADE_ISOLATION": "process", "LABKIT_API_KEY": SECRET, "OPENAI_API_KEY": SECRET,
                "LABKIT_LANG": "en"})
    out, err = run.communicate(timeout=280)
    assert run.returncode == 0, err[-2000:]
    assert "Warning: LABKIT_GRADE_ISOLATION=process" in err and "without namespaces" in err
    feedback = (tmp_path / "g-feedback" / "thief.md").read_text(encoding="utf-8")
    assert "NOTHING FOUND" in feedback and SECRET not in feedback, feedback
    assert rows(tmp_path / "g.csv")["thief"]["total"] == "16"
