"""Graded assignments on otter-grader: the shipped labs, their student versions, and sandboxed grading.

``labkit assignment --list`` / ``labkit assignment NAME DEST`` / ``labkit grade NAME SUBMISSIONS -o grades.csv``
are the command-line side; this package is the Python side. Grading needs the ``grade`` extra
(``pip install 'labkit[grade]'``, which brings otter-grader 7).

Threat model. A submission is untrusted code. What grading enforces (with namespaces: as root, or
where user namespaces are allowed; :func:`isolation` says which level a machine gets):

- it never reaches the configured real backend (no ``LABKIT_*``/``OPENAI_*`` setting is passed on;
  the child's own practice server is the only thing it can reach: its network namespace has only
  loopback);
- it cannot forge or change its grade: its code runs in one process (as an unprivileged user of its
  own) and the tests in another that never runs it (as another user); a test calls the student's
  functions through stand-ins and gets plain data back, and every comparison, ``assert`` and verdict
  is computed in the test process with otter-grader's own classes. Printing results, writing to any
  file descriptor, reading ``/proc`` or monkeypatching otter, doctest or builtins changes nothing but
  its own process;
- it cannot read the hidden tests: they are not on disk anywhere it can see (the shipped masters and
  the gradebook are covered, ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run/lock`` are fresh ones, ``/proc``
  shows only its own PID namespace), and its process only ever sees the arguments a test passes to its
  functions; public cases run before any hidden case, and nothing it prints reaches the feedback;
- it cannot read or change other submissions, the gradebook or the feedback (covered by empty
  mounts; as root it also runs as unprivileged user ids of its own, a block of ids per run; with a
  user namespace its process has no capability and a PID namespace of its own, and the sandbox's
  root holds only the system folders and the Python environment, read-only);
- it cannot stop the run: time limits per cell, per test case (a case that runs out of time kills
  the student's process, which is started again for the cases left: that case alone fails) and per
  submission, an address-space limit, file-size, open-file and (as root) process limits, output
  capped, forked processes killed after each cell.

Left to the TA: the student's process sees the arguments the hidden tests pass to its functions (it
cannot send them anywhere the grader shows), and a function that returns an object of a class the
notebook defined gets no comparison or truth test from the grader (that test fails): review such
outliers by hand. Without namespaces (``isolation() == "process"``, which must be asked for with
``LABKIT_GRADE_ISOLATION=process``) only the processes, the grading users (as root), the temporary
copy, the cleaned environment and the limits apply. The hidden tests shipped in this repository are visible to
anyone who has the repository: keep the master of a graded exam elsewhere and pass its path.

Example:
    >>> from labkit.grading import list_assignments
    >>> list_assignments()
    ['batch-evaluation', 'multimodal-request']
"""

from .assignments import GradingError, build, list_assignments, master_path, write_student_version
from .brief import brief_checks
from .grade import GradeSummary, Outcome, Submission, find_submissions, grade_folder
from .jail import Limits, isolation

__all__ = [
    "GradeSummary",
    "GradingError",
    "Limits",
    "Outcome",
    "Submission",
    "brief_checks",
    "build",
    "find_submissions",
    "grade_folder",
    "isolation",
    "list_assignments",
    "master_path",
    "write_student_version",
]
