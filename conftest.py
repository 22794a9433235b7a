"""labkit's docstring examples (``--doctest-modules labkit``) show the English messages: they run with
LABKIT_LANG=en, as tests/conftest.py's tests do, whatever this machine's locale (labkit speaks Chinese
where nothing names a language). Notebooks keep the default: their kernels speak Chinese."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _doctests_in_english(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.setenv("LABKIT_LANG", "en")
    yield
