"""Graded assignments on otter-grader: the shipped labs, their student versions, and sandboxed grading.

``labkit assignment --list`` / ``labkit assignment NAME DEST`` / ``labkit grade NAME SUBMISSIONS -o grades.csv``
are the command-line side; this package is the Python side. Grading needs the ``grade`` extra
(``pip install 'labkit[grade]'``, which brings otter-grader 7).

Threat model. A submission is untrusted code. What grading enforces (with namespaces: as root, or
where user namespaces are allowed; :func:`isolation` says which level a machine gets):

- it never reaches the configured real backend (no ``LABKIT_*``/``OPENAI_*`` setting is passed on;
  the child's own practice server is the only thing it can reach: its network namespace has only
  loopback);
- it cannot read the hidden tests: they are not on disk anywhere it can see (the shipped masters and
  the gradebook are covered, ``/tmp`` is a fresh one), and they reach its process only after its
  cells have finished, on a pipe;
- it cannot read or change other submissions, the gradebook or the feedback (covered by empty
  mounts; as root it also runs as an unprivileged user id of its own);
- it cannot stop the run: time limits per cell and per submission (the whole process group is
  killed), an address-space limit, file-size, open-file and (as root) process limits, output capped,
  forked processes killed after each cell.

Not enforced: code in the submission's own process can tamper with the test run that follows in
that process (monkey-patching, threads), exactly as under ``otter run``; review outliers by hand.
Without namespaces (``isolation() == "process"``) only the process, the temporary copy, the
environment and the limits apply. The hidden tests shipped in this repository are visible to
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
