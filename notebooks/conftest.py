"""nbval runs the lessons against the embedded practice server, whatever this machine's environment
says: a LABKIT_*/OPENAI_* variable must not send CI's notebook runs to a real backend. (The
practice server's own LABKIT_PRACTICE_* settings, such as fast pacing, are kept.)"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")) and not name.startswith("LABKIT_PRACTICE_"):
            del os.environ[name]
