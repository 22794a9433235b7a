"""What a hostile submission can do to its own grade: nothing beyond its honest answers.

The student's code runs in one process and the tests in another that never runs it (see
labkit/grading/execute.py): a notebook that forges results, monkeypatches the test machinery or
hunts for the hidden tests gets its honest score, and a function that hangs on some hidden cases
loses those cases only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="grading needs otter-grader: pip install -e '.[test]'")

from grading_support import Maker, rows, write  # noqa: E402

from labkit.grading import Limits, grade_folder, isolation  # noqa: E402

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(isolation() == "process", reason="needs Linux namespaces (root or user namespaces)")]

ASSIGNMENT = "multimodal-request"

FORGE = r'''
import glob, json, os, sys, threading, time
MARK = "labkit-forgery-{mark}"
fake = {{q: {{"name": q, "score": 4, "possible": 4, "test_cases": [], "test_case_results": []}}
        for q in ("q1", "q2", "q3", "q4")}}
seen = []
for path in ("/proc/self/cmdline", "/proc/1/cmdline", "/proc/1/environ"):
    try:
        seen.append(open(path, "rb").read().decode("utf-8", "replace"))
    except OSError as exc:
        seen.append(str(exc))
try:
    seen.append(os.read(0, 65536).decode("utf-8", "replace"))
except OSError as exc:
    seen.append(str(exc))
nonces = [w for text in seen for w in text.replace("\x00", " ").replace('"', " ").split() if len(w) == 32]

def forge():
    for _ in range(400):
        for nonce in nonces or [None]:
            line = (json.dumps({{"event": "results", "nonce": nonce, "results": fake}}) + "\n").encode()
            for fd in range(1, 64):
                try:
                    os.write(fd, line)
                except OSError:
                    pass
        found = []
        for path in glob.glob("/proc/*/fd/*") + glob.glob("/proc/*/cmdline"):
            try:
                found.append(open(path, "rb").read(65536).decode("utf-8", "replace"))
            except OSError:
                pass
        for place in ("/run/lock", "/tmp", "/dev/shm", "/var/tmp"):
            try:
                open(os.path.join(place, MARK), "a").write("\n".join(found + seen + [repr(a) for a in calls]))
            except OSError:
                pass
        time.sleep(0.05)

threading.Thread(target=forge, daemon=True).start()
'''

PATCH = r'''
import builtins, doctest
import otter.test_files.ok_test as ok_test
import otter.test_files as test_files
ok_test.run_doctest = lambda name, body, env: (True, "")
doctest.DocTestRunner.run = lambda self, test, **kw: doctest.TestResults(0, len(test.examples))
doctest.DocTestRunner.summarize = lambda self, verbose=None: doctest.TestResults(0, 1)
original_init = test_files.GradingResults.__init__
test_files.GradingResults.total = property(lambda self: 16)
builtins.AssertionError = type("AssertionError", (Exception,), {{}})
'''

SPIES = r'''
calls = []
class Anything:
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True
    def __getitem__(self, key):
        return self
    def __len__(self):
        return 1
    def __iter__(self):
        return iter([self, self])
    def __contains__(self, item):
        return True
def build_messages(*args, **kwargs):
    calls.append(args)
    return Anything()
def collect_stream(*args, **kwargs):
    calls.append(args)
    return Anything()
def strip_role_prefix(*args, **kwargs):
    calls.append(args)
    sys.stderr.write("LEAK " + repr(calls) + "\n")
    raise AssertionError("LEAK " + repr(calls)[-250:])
def ask(*args, **kwargs):
    calls.append(args)
    return Anything()
'''


@pytest.fixture(scope="module")
def make(tmp_path_factory: pytest.TempPathFactory) -> Maker:
    return Maker(ASSIGNMENT, tmp_path_factory.mktemp("dist"))


def test_a_forging_notebook_gets_its_honest_zero(tmp_path: Path, make: Maker) -> None:
    mark = f"{os.getpid()}-{tmp_path.name}"
    nb = make.partial([])  # the student version: no answer at all, an honest 0
    nb["cells"][1:1] = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                         "source": source.format(mark=mark)} for source in (SPIES, FORGE, PATCH)]
    subs = tmp_path / "subs"
    write(subs / "mallory.ipynb", nb)
    write(subs / "ana.ipynb", make.full())
    grade_folder(ASSIGNMENT, subs, tmp_path / "g.csv", limits=Limits(wall=150.0, cell=8.0), jobs=2, progress=False)
    table = rows(tmp_path / "g.csv")
    assert table["ana"]["total"] == "16"
    mallory = table["mallory"]
    assert mallory["total"] == "0", mallory
    assert (mallory["q1"], mallory["q2"], mallory["q3"], mallory["q4"]) == ("0", "0", "0", "0")
    feedback = (tmp_path / "g-feedback" / "mallory.md").read_text(encoding="utf-8")
    assert "**总分：0 / 16**" in feedback
    # nothing of the hidden tests reached the feedback, the gradebook or a host folder
    for secret in ("I am an assistant", "The assistant said hi", "hidden-green", "blue-portrait.png", "LEAK"):
        assert secret not in feedback and secret not in (tmp_path / "g.csv").read_text(encoding="utf-8")
    for place in ("/run/lock", "/tmp", "/dev/shm", "/var/tmp"):
        assert not os.path.exists(os.path.join(place, f"labkit-forgery-{mark}")), place


def test_a_case_that_hangs_fails_alone(tmp_path: Path, make: Maker) -> None:
    """strip_role_prefix hangs on two hidden cases of q3, swallowing every exception (doctest's bare
    except does the same): those two cases fail, everything else scores."""
    hanging = ("def strip_role_prefix(text):\n"
               "    if text.startswith('assistant\\nI am') or 'The assistant said' in text:\n"
               "        while True:\n"
               "            try:\n"
               "                sum(range(10 ** 6))\n"
               "            except BaseException:\n"
               "                pass\n"
               "    stripped = text.lstrip()\n"
               "    if stripped.startswith('assistant\\n'):\n"
               "        return stripped[len('assistant\\n'):].lstrip()\n"
               "    return text\n")
    subs = tmp_path / "subs"
    write(subs / "hank.ipynb", make.with_cell_before("strip_role_prefix", hanging, replace=True))
    summary = grade_folder(ASSIGNMENT, subs, tmp_path / "g.csv", limits=Limits(wall=150.0, cell=5.0), progress=False)
    hank = rows(tmp_path / "g.csv")["hank"]
    assert (hank["q1"], hank["q2"], hank["q3"], hank["q4"], hank["total"]) == ("4", "4", "2", "4", "14"), hank
    assert summary.graded[0].seconds < 120


PLANT = r'''
import os
os.makedirs("labkit_planted", exist_ok=True)
with open("labkit_planted/__init__.py", "w") as handle:
    handle.write("import doctest\n"
                 "doctest.DocTestRunner.run = lambda self, test, **kw: doctest.TestResults(0, len(test.examples))\n"
                 "doctest.DocTestRunner.summarize = lambda self, verbose=None: doctest.TestResults(0, 1)\n")
with open("labkit_planted/sub.py", "w") as handle:
    handle.write("VALUE = 42\n")
from labkit_planted import sub as planted
assert planted.VALUE == 42
'''


def test_a_package_planted_in_the_notebooks_folder_runs_only_in_its_own_process(tmp_path: Path, make: Maker) -> None:
    """The notebook's folder is on the submission process's path (its own modules import, as in
    Jupyter) and never on the test process's: a package the cells write there, whose module the
    namespace then names, is not imported where the tests run."""
    nb = make.partial([])  # the student version: an honest 0
    nb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                           "source": PLANT})
    subs = tmp_path / "subs"
    write(subs / "pat.ipynb", nb)
    summary = grade_folder(ASSIGNMENT, subs, tmp_path / "g.csv", limits=Limits(wall=150.0, cell=8.0), progress=False)
    pat = rows(tmp_path / "g.csv")["pat"]
    assert pat["total"] == "0", pat
    # the planting cell itself ran: the package imported in the notebook's own process
    assert [c for c in summary.graded[0].cell_errors if c["index"] == 1] == [], summary.graded[0].cell_errors


DESCRIPTORS = r'''
import os
held = {int(fd): os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")}
assert held.get(0) == "/dev/null", held
assert sorted(t.split(":")[0] for fd, t in held.items() if t.startswith(("pipe:", "socket:"))) == ["pipe", "pipe"], held
'''


def test_the_submission_process_holds_only_its_own_two_pipes(tmp_path: Path, make: Maker) -> None:
    """Its stdin is /dev/null (the supervisor's carries the tests and the nonce), and it holds
    neither the results channel, the test process's pipes nor the practice server's socket: only the
    two pipes to and from the supervisor."""
    subs = tmp_path / "subs"
    write(subs / "ida.ipynb", make.with_cells_at_end([DESCRIPTORS]))
    summary = grade_folder(ASSIGNMENT, subs, tmp_path / "g.csv", limits=Limits(wall=150.0, cell=8.0), progress=False)
    assert summary.graded[0].cell_errors == [], summary.graded[0].cell_errors
    assert rows(tmp_path / "g.csv")["ida"]["total"] == "16"
