"""The graded labs as a student meets them: the solved notebook, run top to bottom in a real Jupyter
kernel against the embedded practice server, passes every public test through otter's own
`grader.check` (the hidden ones are test_grading.py's business)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="the labs' grader.check needs otter-grader")

import nbformat  # noqa: E402
from grading_support import Maker  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from labkit.grading import list_assignments  # noqa: E402


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list_assignments())
def test_solved_lab_passes_its_public_checks_in_a_kernel(name: str, tmp_path: Path) -> None:
    solved = Maker(name, tmp_path).full()
    path = tmp_path / f"{name}.ipynb"  # grader = otter.Notebook("<name>.ipynb") reads the public tests from it
    path.write_text(json.dumps(solved, ensure_ascii=False), encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    checks = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("grader.check(")]
    assert len(checks) == 4
    for cell in checks:
        shown = "".join(str(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in cell.outputs)
        assert "All test cases passed!" in shown, f"{cell.source}: {shown[:1500]}"
