"""Shift+Enter in the playground's question box sends the question (a tiny anywidget front end).

ipywidgets' ``Textarea`` reports no key presses, so this invisible widget, placed inside the
playground, listens for Shift+Enter on the playground's text box and sends ``{"event": "submit",
"value": <the text>}`` to Python. Without a front end (nbval, scripts) it simply does nothing.
"""

from __future__ import annotations

import anywidget

__all__ = ["ShiftEnter"]

_ESM = r"""
// One window-level listener in the capture phase: it runs before JupyterLab's or Notebook 7's own
// shortcut handling (which would run the cell on Shift+Enter) and acts only on this playground's box.
function render({ model, el }) {
  el.style.display = "none";
  const onKey = (event) => {
    if (event.key !== "Enter" || !event.shiftKey || event.isComposing) return;
    const root = el.closest(".labkit-playground");
    const box = event.target;
    if (!root || !(box instanceof HTMLTextAreaElement) || !root.contains(box)) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    model.send({ event: "submit", value: box.value });
  };
  window.addEventListener("keydown", onKey, true);
  return () => window.removeEventListener("keydown", onKey, true);
}
export default { render };
"""


class ShiftEnter(anywidget.AnyWidget):
    """Invisible helper: Shift+Enter in the enclosing ``.labkit-playground``'s text box submits."""

    _esm = _ESM
