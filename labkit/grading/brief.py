"""``grader.check`` in a lab, shown briefly: a failing public test's own sentence first, then the line
that failed, with otter's full doctest report folded away (it stays one click off).

Otter shows a failing check as its whole doctest transcript, where the sentence that names the mistake
sits deep in a traceback. :func:`brief_checks` registers a display for otter's result in the running
IPython kernel (by class name: otter is not imported here), so the lab's own ``grader.check("q1")``
cells show it; a check that passed keeps otter's own display, and the plain-text form is untouched.

Example:
    >>> brief_checks()  # outside IPython: nothing to register
    False
"""

from __future__ import annotations

import html
from typing import Any

from .feedback import failure_line

__all__ = ["brief_checks", "render_check"]

_OTTER_RESULT = ("otter.test_files.abstract_test", "TestFile")


def render_check(result: Any) -> str | None:
    """The brief HTML of one ``grader.check`` result (otter's own display when every test passed).

    Example:
        >>> from types import SimpleNamespace as N
        >>> case = N(name="q1 - 1", hidden=False, failure_message="应当返回列表。")
        >>> failed = N(passed_all=False, name="q1", test_case_results=[N(passed=False, test_case=case,
        ...     message="Trying: ...\\nException raised:\\n    AssertionError: 应当返回列表\\n")])
        >>> "应当返回列表。" in render_check(failed).split("AssertionError")[0]
        True
    """
    results = list(getattr(result, "test_case_results", None) or [])
    if getattr(result, "passed_all", True) or not results:
        own = getattr(result, "_repr_html_", None)
        return own() if callable(own) else None
    name = html.escape(str(getattr(result, "name", "")))
    failed = [r for r in results if not r.passed]
    parts = [f"<p><strong style='color: #b00;'>❌ {name}：{len(failed)} / {len(results)} "
             "个公开测试没有通过</strong></p>"]
    for r in results:
        case = r.test_case
        label = html.escape(str(case.name))
        if r.passed:
            parts.append(f"<p>✅ {label}</p>")
            continue
        sentence = case.failure_message or ""
        line = failure_line(str(r.message or ""))
        parts.append(f"<p>❌ <strong>{label}</strong>：{html.escape(sentence or line)}</p>")
        if sentence and line not in sentence:
            parts.append(f"<p style='margin-left: 2em; color: #555;'><code>{html.escape(line)}</code></p>")
        parts.append("<details style='margin-left: 2em;'><summary>完整的测试输出（doctest）</summary>"
                     f"<pre>{html.escape(str(r.message or ''))}</pre></details>")
    return "\n".join(parts)


def brief_checks() -> bool:
    """Show ``grader.check`` results briefly in this IPython kernel; returns whether it could.

    Example:
        >>> brief_checks()
        False
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type_by_name(*_OTTER_RESULT, render_check)
    return True
