"""Shift+Enter in the playground's question box sends the question (a tiny anywidget front end).

ipywidgets' ``Textarea`` reports no key presses, so this invisible widget, placed inside the
playground, listens for Shift+Enter on the playground's text box and sends ``{"event": "submit",
"value": <the text>}`` to Python. Without a front end (nbval, scripts) it simply does nothing.
"""

from __future__ import annotations

import anywidget

__all__ = ["ShiftEnter"]

_ESM = r"""
function render({ model, el }) {
  el.style.display = "none";
  let tries = 0;
  function attach() {
    const root = el.closest(".labkit-playground");
    const area = root ? root.querySelector("textarea") : null;
    if (!area) {
      if (tries++ < 200) requestAnimationFrame(attach);
      return;
    }
    if (area.dataset.labkitShiftEnter) return;
    area.dataset.labkitShiftEnter = "1";
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && event.shiftKey && !event.isComposing) {
        event.preventDefault();
        event.stopPropagation();
        model.send({ event: "submit", value: area.value });
      }
    }, true);
  }
  attach();
}
export default { render };
"""


class ShiftEnter(anywidget.AnyWidget):
    """Invisible helper: Shift+Enter in the enclosing ``.labkit-playground``'s text box submits."""

    _esm = _ESM
