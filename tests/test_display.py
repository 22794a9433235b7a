"""The live Jupyter view: it throttles its renders on a fast stream and keeps a slow one moving."""

from __future__ import annotations

from labkit.display import JupyterView


class FakeHandle:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def update(self, body: object) -> None:
        self.log.append(body.data)  # type: ignore[attr-defined]


def test_jupyter_view_renders_o_n_and_ends_exact() -> None:
    log: list[str] = []

    def publish(body: object, display_id: bool) -> FakeHandle:
        log.append(body.data)  # type: ignore[attr-defined]
        return FakeHandle(log)

    clock = iter(i * 0.001 for i in range(100_000))  # a fast stream: one token a millisecond
    view = JupyterView(publish, clock=lambda: next(clock))
    text = ""
    for i in range(4000):
        delta = f" word{i}"
        text += delta
        view.update(delta)
    view.finish(text)
    assert log[-1] == text
    assert view.rendered_chars < 12 * len(text), "total rendering is linear in the answer's length"
    assert view.renders < 60


def test_jupyter_view_updates_at_least_twice_a_second() -> None:
    log: list[str] = []
    t = [0.0]
    view = JupyterView(lambda body, display_id: (log.append(body.data), FakeHandle(log))[1], clock=lambda: t[0])
    text = "x" * 10_000
    view.update(text)
    for _ in range(20):  # a slow stream: one character every 0.25 s on a long text
        t[0] += 0.25
        text += "y"
        view.update("y")
    assert len(log) >= 9
