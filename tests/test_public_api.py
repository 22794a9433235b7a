"""labkit's public surface, pinned: a name added or removed here is a decision, not an accident."""

from __future__ import annotations

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


def test_doctor_is_the_function_wherever_it_was_imported_from() -> None:
    code = ("from labkit.checkup import DoctorReport, doctor\nimport labkit\n"
            "assert labkit.doctor is doctor and callable(labkit.doctor), labkit.doctor\n"
            "from labkit import doctor as again\nassert again is doctor\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_import_labkit_imports_what_is_used_and_no_more() -> None:
    """`import labkit` is free; the practice server's and the grader's modules do not load openai's client
    (30 MB and half a second in every process that imported labkit); the first `labkit.chat` does."""
    code = ("import sys, labkit\nprint('openai' in sys.modules, 'PIL' in sys.modules)\n"
            "import labkit.practice.server, labkit.grading\nprint('openai' in sys.modules)\n"
            "labkit.chat, labkit.backend\nprint('openai' in sys.modules)\n"
            "print(sorted(set(labkit.__all__) - set(dir(labkit))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.split("\n")[:4] == ["False False", "False", "True", "[]"], out.stdout + out.stderr


def test_a_name_labkit_does_not_have_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'chatt'"):
        labkit.chatt  # noqa: B018
    assert not hasattr(labkit, "no_such_module")


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
