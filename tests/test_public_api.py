"""labkit's public surface, pinned: a name added or removed here is a decision, not an accident."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import labkit

PUBLIC = [
    "AuthError",
    "BackendError",
    "BackendUnreachable",
    "BatchItem",
    "BatchResult",
    "ChatStream",
    "ConfigError",
    "Conversation",
    "ImageError",
    "ImageInfo",
    "LabkitError",
    "ModelNotFound",
    "OutputError",
    "Playground",
    "RateLimited",
    "Reply",
    "RequestRejected",
    "RolePrefixStripper",
    "Secret",
    "ServeError",
    "Settings",
    "StreamError",
    "SyncReport",
    "UnexpectedResponse",
    "UsageError",
    "assistant",
    "chat",
    "client",
    "configure",
    "describe_image",
    "doctor",
    "encode_image",
    "estimate_image_tokens",
    "estimate_tokens",
    "grade_folder",
    "items_from_folder",
    "list_assignments",
    "llava_target_size",
    "load_results",
    "load_settings",
    "mask_key",
    "reset_configuration",
    "run_batch",
    "score_keywords",
    "stream_chat",
    "strip_role_prefix",
    "sync_workspace",
    "system",
    "user",
    "write_student_version",
]


def test_all_is_sorted_and_pinned() -> None:
    assert labkit.__all__ == sorted(labkit.__all__, key=lambda n: (n[0].islower(), n)), "keep __all__ sorted"
    assert labkit.__all__ == PUBLIC


def test_every_public_name_exists_and_nothing_else_leaks() -> None:
    for name in labkit.__all__:
        assert getattr(labkit, name) is not None
    leaked = {n for n in vars(labkit) if not n.startswith("_")} - set(labkit.__all__)
    modules = {n for n in leaked if type(getattr(labkit, n)).__name__ == "module"}
    assert leaked == modules, f"public names outside __all__: {sorted(leaked - modules)}"


@pytest.mark.parametrize("name", [n for n in PUBLIC if isinstance(getattr(labkit, n), type)])
def test_classes_say_labkit_in_a_traceback(name: str) -> None:
    cls = getattr(labkit, name)
    if issubclass(cls, BaseException) or not hasattr(cls, "__dataclass_fields__"):
        assert cls.__module__ == "labkit", f"{name} prints as {cls.__module__}.{name}"
    else:  # dataclasses keep their module, so that typing.get_type_hints resolves their annotations
        import typing

        assert typing.get_type_hints(cls)


def test_an_image_error_prints_as_labkit_image_error() -> None:
    code = "import labkit; labkit.encode_image('no-such-file.jpg')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "labkit.ImageError: No file at 'no-such-file.jpg'" in out.stderr


def test_doctor_is_the_function_and_its_module_still_imports() -> None:
    assert callable(labkit.doctor) and labkit.doctor.__name__ == "doctor"
    from labkit.doctor import DoctorReport, doctor

    assert doctor is labkit.doctor and DoctorReport
    assert importlib.import_module("labkit.doctor").doctor is labkit.doctor


def test_the_lessons_imports_keep_working() -> None:
    from labkit.serve import VLLMServer, build_vllm_command, check_gpus, plan_fit  # lesson 07

    assert all([VLLMServer, build_vllm_command, check_gpus, plan_fit])


def test_messages_never_imports_what_sends_them() -> None:
    import ast

    tree = ast.parse(open(labkit.messages.__file__, encoding="utf-8").read())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    imported = {n.module for n in top_level if isinstance(n, ast.ImportFrom)} | {
        a.name for n in top_level if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"streaming", "conversation", "config", "failures", "openai"}, imported
