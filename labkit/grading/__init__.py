"""Graded assignments on otter-grader: the shipped labs, their student versions, and sandboxed grading.

``labkit assignment --list`` / ``labkit assignment NAME DEST`` / ``labkit grade NAME SUBMISSIONS -o grades.csv``
are the command-line side; this package is the Python side. Grading needs the ``grade`` extra
(``pip install 'labkit[grade]'``, which brings otter-grader 7).

Example:
    >>> from labkit.grading import list_assignments
    >>> list_assignments()
    ['batch-evaluation', 'multimodal-request']
"""

from .assignments import GradingError, build, list_assignments, master_path, write_student_version
from .grade import GradeSummary, Outcome, Submission, find_submissions, grade_folder
from .jail import Limits, isolation

__all__ = [
    "GradeSummary",
    "GradingError",
    "Limits",
    "Outcome",
    "Submission",
    "build",
    "find_submissions",
    "grade_folder",
    "isolation",
    "list_assignments",
    "master_path",
    "write_student_version",
]
