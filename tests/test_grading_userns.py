"""Grading as a non-root grader (user namespaces): a hostile submission gets no more than as root.

Inside ``unshare --user --map-root-user`` every process of the sandbox is the namespace's uid 0,
which is the grader's own uid outside. The student's code must still not reach the supervisor or
the test process (ptrace, ``/proc/<pid>/mem`` or ``environ``, signals, their file descriptors),
undo the sandbox's mounts (the hidden masters, the gradebook) or read the grader's private files.
The test grades a forging notebook and a probing one as an unprivileged user (``nobody``, or the
user running the tests when that is not root) and asserts ``isolation() == "userns"``, the honest
scores and that nothing leaked into the feedback or the gradebook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="grading needs otter-grader: pip install -e '.[test]'")

from grading_support import Maker, rows, write  # noqa: E402
from test_grading_forgery import FORGE, PATCH, SPIES  # noqa: E402

from labkit.grading import Limits  # noqa: E402
from labkit.grading.assignments import ASSIGNMENTS_DIR  # noqa: E402
from labkit.grading.execute import _nproc_per_namespace  # noqa: E402
from labkit.grading.grade import _needed_paths  # noqa: E402

pytestmark = pytest.mark.timeout(240)

ASSIGNMENT = "multimodal-request"
NOBODY = 65534
SECRET = "labkit-grader-private-7d1e"
LEAKS = ("I am an assistant", "The assistant said hi", "hidden-green", "blue-portrait.png", "LEAK", SECRET, "FORGED")

# the results channel, found through the supervisor's command line and memory (the nonce: any 32
# hex digits there), while the tests wait for the first call (before the fix: 16/16, status ok)
NS_FORGE = r'''
import json, os, re, threading, time

def _memory(pid):
    found = []
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
    except OSError:
        return b""
    with mem:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if perms.startswith("rw") and hi - lo < (64 << 20):
                try:
                    mem.seek(lo)
                    found.append(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    pass
    return b"".join(found)

def ns_forge():
    fake = {q: {"name": q, "score": 4, "possible": 4, "test_cases": [], "test_case_results": []}
            for q in ("q1", "q2", "q3", "q4")}
    for _ in range(200):
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"supervise" not in argv:
                continue
            fd = argv[argv.index(b"supervise") + 1].decode()
            for nonce in set(re.findall(rb'(?<![0-9a-f])([0-9a-f]{32})(?![0-9a-f])', _memory(pid))):
                line = json.dumps({"event": "results", "nonce": nonce.decode(), "results": fake}) + "\n"
                try:
                    out = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY)
                    os.write(out, line.encode())
                    os.close(out)
                except OSError:
                    pass
        time.sleep(0.1)

threading.Thread(target=ns_forge, daemon=True).start()
waited = []

def build_messages(*args, **kwargs):
    if not waited:
        waited.append(time.sleep(3))
    return None
'''

# each cell raises when the sandbox holds, and puts what it found into its error when it does not
UNMOUNT = r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
gone = [p for p in {hidden!r} if libc.umount2(p.encode(), 2) == 0]
assert gone, "nothing unmounted: errno %d" % ctypes.get_errno()
'''
READ_MASTER = r'''
text = open({master!r}, encoding="utf-8").read()
raise RuntimeError("LEAK " + text[text.find("hidden-green") - 100:][:200])
'''
FORGE_BOOK = r'''
with open({book!r}, "a", encoding="utf-8") as handle:
    handle.write("eve,ok,,FORGED,4,4,4,4,16,16\n")
'''
GRADER_FILE = r'''
import os
with open(os.path.join({private!r}, ".bashrc"), "a") as handle:  # runs as the grader, outside the sandbox
    handle.write("echo FORGED\\n")
raise RuntimeError("LEAK " + open(os.path.join({private!r}, "key.txt")).read())
'''
OTHERS = r'''
import ctypes, os
others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
libc = ctypes.CDLL(None, use_errno=True)
found = []
for pid in others:
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
        found.append(f"ptraced {pid}")
        libc.ptrace(17, pid, 0, 0)
    for part in ("environ", "mem"):
        try:
            with open(f"/proc/{pid}/{part}", "rb", buffering=0) as handle:
                if part == "mem":
                    for line in open(f"/proc/{pid}/maps").read().splitlines():
                        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                        if line.split()[1].startswith("rw") and hi - lo < (64 << 20):
                            handle.seek(lo)
                            data = handle.read(hi - lo)
                            at = data.find(b"hidden-green")
                            if at >= 0:
                                found.append("LEAK " + data[at - 100:at + 100].decode(errors="replace"))
                                break
                else:
                    found.append(f"{part} of {pid}: " + handle.read()[:40].decode(errors="replace"))
        except (OSError, ValueError, OverflowError):
            pass
raise RuntimeError("reached " + " | ".join(found) if found else "no other process reachable")
'''
FORKS = r'''
import os, time
kids = []
for _ in range(400):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
raise RuntimeError(f"forked {{len(kids)}} processes")
'''
VENV = r'''
import os, site
for folder in {folders!r}:
    open(os.path.join(folder, "labkit-userns-planted.pth"), "w").write("import os")
'''
KILL = r'''
import os, signal
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
for sig in (signal.SIGINT, signal.SIGTERM):
    try:
        os.kill(1, sig)
    except OSError:
        pass
'''

_AS_NOBODY = r'''
import os, sys
from labkit.grading.jail import _expose, _mount
_expose(sys.argv[3:])  # the Python installation may lie in a folder others cannot enter (/root)
private = sys.argv[2]  # the grader's own folder, on a tmpfs of this mount namespace only
_mount("tmpfs", os.path.dirname(private), "tmpfs", 0, "size=1m,mode=0755")
os.mkdir(private, 0o700)
with open(os.path.join(private, "key.txt"), "w") as handle:
    handle.write(os.environ["USERNS_SECRET"])
for path in (private, os.path.join(private, "key.txt")):
    os.chown(path, 65534, 65534)
os.chmod(os.path.join(private, "key.txt"), 0o600)
os.environ["HOME"] = private
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
os.execv(sys.executable, [sys.executable, "-I", sys.argv[1]])
'''

_GRADE = r'''
import json, os, sys
from labkit.grading import Limits, grade_folder, isolation
config = json.loads(os.environ["USERNS_TEST"])
print("ISOLATION", isolation(), os.geteuid(), flush=True)
grade_folder(config["assignment"], config["subs"], config["book"], limits=Limits(wall=120.0, cell=8.0),
             jobs=2, progress=False)
'''


def _command(base: Path) -> tuple[list[str], str, str]:
    """How to run a script as an unprivileged grader and its private folder (its home, outside the
    temporary folders), or ``([], why not, "")``."""
    script = base / "grade.py"
    script.write_text(_GRADE, encoding="utf-8")
    if os.geteuid() != 0:
        private = Path(tempfile.mkdtemp(prefix="labkit-userns-test-", dir=Path.home()))
        (private / "key.txt").write_text(SECRET, encoding="utf-8")
        (private / "key.txt").chmod(0o600)
        return [sys.executable, "-I", str(script)], "", str(private)
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if unshare is None or setpriv is None:
        return [], "needs unshare and setpriv (util-linux) to run the grader as an unprivileged user", ""
    probe = subprocess.run([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", unshare, "--user",
                            "--map-root-user", "--mount", "--net", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        return [], f"unprivileged user namespaces are not allowed here: {probe.stderr.decode(errors='replace')}", ""
    top = next((p for p in ("/srv", "/media", "/mnt") if os.path.isdir(p) and not any(
        n == p or n.startswith(p + "/") for n in map(os.path.realpath, _needed_paths()))), None)
    if top is None:
        return [], "no folder (/srv, /media, /mnt) to hold the grader's private folder in a mount namespace", ""
    private = f"{top}/labkit-grader"
    return [unshare, "--mount", "--propagation", "private", "--", sys.executable, "-I", "-c", _AS_NOBODY,
            str(script), private, *_needed_paths()], "", private


def test_a_hostile_submission_of_a_non_root_grader_gets_its_honest_score(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="labkit-userns-test-"))
    private = ""
    try:
        command, why, private = _command(base)
        if not command:
            pytest.skip(why)
        make = Maker(ASSIGNMENT, tmp_path)
        subs, book = base / "subs", base / "g.csv"
        mallory = make.partial([])  # the student version: no answer at all, an honest 0
        mallory["cells"][1:1] = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                                  "source": source.format(mark=base.name)} for source in (SPIES, FORGE, PATCH)]
        write(subs / "mallory.ipynb", mallory)
        trudy = make.partial([])
        trudy["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                               "source": NS_FORGE})
        write(subs / "trudy.ipynb", trudy)
        hidden = [str(ASSIGNMENTS_DIR), str(subs), str(base / "g-feedback"), str(book)]
        master = str(ASSIGNMENTS_DIR / f"{ASSIGNMENT}.ipynb")
        write(subs / "eve.ipynb", make.with_cells_at_end([
            UNMOUNT.format(hidden=hidden), READ_MASTER.format(master=master), FORGE_BOOK.format(book=str(book)),
            GRADER_FILE.format(private=private), OTHERS, FORKS.format(), VENV.format(folders=_needed_paths()), KILL]))
        if os.geteuid() == 0:
            for path in [base, *base.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
        env.update(HOME=private, LABKIT_LANG="zh", USERNS_SECRET=SECRET, USERNS_TEST=json.dumps(
            {"assignment": ASSIGNMENT, "subs": str(subs), "book": str(book)}))
        done = subprocess.run(command, cwd=base, env=env, capture_output=True, text=True, timeout=200)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.split()[:2] == ["ISOLATION", "userns"], done.stdout[-2000:]
        table = rows(book)
        assert set(table) == {"mallory", "eve", "trudy"}, table
        assert table["mallory"]["total"] == "0", table["mallory"]           # forging bought nothing
        assert table["trudy"]["total"] == "0", table["trudy"]
        assert table["eve"]["total"] == "16" and table["eve"]["status"] == "errors", table["eve"]
        eve = (base / "g-feedback" / "eve.md").read_text(encoding="utf-8")
        errors = [line for line in eve.split("## 出错的单元格", 1)[1].splitlines() if line.startswith("- ")]
        assert len(errors) == 8, errors                                     # every probe failed …
        assert "nothing unmounted" in errors[0]                             # … the mounts hold
        assert "multimodal-request.ipynb" in errors[1]                      # … the master stays hidden
        assert "g.csv" in errors[2]                                         # … the gradebook cannot be written
        assert ".bashrc" in errors[3]                                       # … the grader's own files are out of reach
        assert "no other process reachable" in errors[4]                    # … and so are the other processes
        forked = int(errors[5].split("forked ")[1].split()[0])              # … forks are limited
        assert 0 < forked < Limits().processes + 64 or not _nproc_per_namespace(), errors[5]
        assert "labkit-userns-planted.pth" in errors[6]                     # … the Python environment is read-only
        assert "KeyboardInterrupt" in errors[7]                             # … its pid 1 is itself
        assert not any(Path(p, "labkit-userns-planted.pth").exists() for p in _needed_paths())
        everything = "".join((base / "g-feedback" / f"{s}.md").read_text(encoding="utf-8")
                             for s in table) + book.read_text(encoding="utf-8") + done.stdout + done.stderr
        for leak in LEAKS:
            assert leak not in everything, leak
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for folder in filter(os.path.isdir, _needed_paths()):  # only there if the sandbox failed
            Path(folder, "labkit-userns-planted.pth").unlink(missing_ok=True)
        if private and os.geteuid() != 0:
            shutil.rmtree(private, ignore_errors=True)
