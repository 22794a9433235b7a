"""labkit.doctor: it shows the configuration with the key masked, and each failure says what to fix."""

from __future__ import annotations

import labkit
from labkit.checkup import doctor


def test_doctor_reports_and_fixes(configured_fastchat: str) -> None:
    lines: list[str] = []
    labkit.configure(api_key="course-secret-123456")
    report = doctor(echo=lines.append)
    assert report.ok and report.ttft is not None
    assert "course-secret-123456" not in "\n".join(lines) and "…3456" in lines[0]
    assert any("lists 1 model(s): llava-v1.6-34b" in line for line in lines)
    labkit.configure(model="llava-v1.6-mistral-7b")
    report = doctor(echo=lines.append)
    assert not report.ok and "Set LABKIT_MODEL to one of: llava-v1.6-34b" in str(report)
    labkit.configure(base_url="http://127.0.0.1:9/v1")
    report = doctor(echo=lines.append)
    assert not report.ok and "Nothing is listening" in str(report)


def test_doctor_reports_the_backends_context_length(configured_fastchat: str) -> None:
    from labkit.practice import serve_in_thread

    lines: list[str] = []
    assert doctor(echo=lines.append).ok
    assert any("context length" in line and "assumes 4096 tokens" in line for line in lines), lines
    with serve_in_thread(fast=True, dialect="vllm", max_model_len=2048) as url:
        labkit.configure(base_url=url)
        lines.clear()
        assert doctor(echo=lines.append).ok
    assert any("context length" in line and "2048 tokens (the backend's max_model_len)" in line for line in lines)
