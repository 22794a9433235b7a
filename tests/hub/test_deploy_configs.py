"""The JupyterHub configurations that ship (deploy/) name only options JupyterHub 6 and its plugins know,
checked against the real classes (the z2jh file's `hub.config` and `hub.extraConfig` too)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hubsupport import ROOT
from jupyterhub.app import JupyterHub
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

DEPLOY = ROOT / "deploy"


def configurable_classes() -> dict[str, type[Configurable]]:
    """Every configurable class JupyterHub loads (its spawners, authenticators and proxies from entry
    points, oauthenticator's included), with their base classes."""
    found: dict[str, type[Configurable]] = {}
    for cls in [JupyterHub, *JupyterHub().classes]:
        for base in cls.__mro__:
            if isinstance(base, type) and issubclass(base, Configurable):
                found.setdefault(base.__name__, base)
    return found


def unknown_options(config: Config) -> list[str]:
    """`Section.trait` names in ``config`` that no JupyterHub class has as a configurable trait."""
    classes = configurable_classes()
    bad = []
    for section, traits in config.items():
        cls = classes.get(section)
        if cls is None:
            bad.append(f"{section} (no such class)")
            continue
        known = set(cls.class_trait_names(config=True))
        bad.extend(f"{section}.{name}" for name in traits if name not in known)
    return bad


def load(path: Path) -> Config:
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def test_the_checker_catches_a_misspelt_option(tmp_path: Path) -> None:
    bad = tmp_path / "bad_config.py"
    bad.write_text("c = get_config()\nc.Spawner.enviroment = {}\nc.NoSuchSpawner.cmd = []\nc.Spawner.cmd = ['x']\n")
    assert unknown_options(load(bad)) == ["Spawner.enviroment", "NoSuchSpawner (no such class)"]


def test_single_machine_config_names_real_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_KEYS_FILE", str(tmp_path / "keys.csv"))
    config = load(DEPLOY / "jupyterhub_config.py")
    assert unknown_options(config) == []
    assert config.Spawner.default_url == "/lab"
    assert config.Spawner.environment["LABKIT_BASE_URL"].endswith("/api/v1")


def test_single_machine_config_gives_each_student_their_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys.csv"
    with keys.open("w", newline="") as f:
        csv.writer(f).writerows([("ada", "sk-ada-1"), ("bo", "sk-bo-2")])
    monkeypatch.setenv("LABKIT_KEYS_FILE", str(keys))
    key_for = load(DEPLOY / "jupyterhub_config.py").Spawner.environment["LABKIT_API_KEY"]
    spawner = lambda name: SimpleNamespace(user=SimpleNamespace(name=name))  # noqa: E731
    assert key_for(spawner("ada")) == "sk-ada-1" and key_for(spawner("bo")) == "sk-bo-2"
    with pytest.raises(ValueError, match="no course API key for user 'eve' in .*keys.csv") as info:
        key_for(spawner("eve"))
    assert "sk-" not in str(info.value)


def test_z2jh_hub_config_and_extra_config_name_real_options() -> None:
    values = yaml.safe_load((DEPLOY / "z2jh" / "config.yaml").read_text(encoding="utf-8"))
    assert unknown_options(Config(values["hub"]["config"])) == []
    # hub.extraConfig runs in the hub pod after the chart has set KubeSpawner.environment from singleuser.extraEnv.
    c = Config()
    c.KubeSpawner.environment = dict(values["singleuser"]["extraEnv"])
    for name, code in values["hub"]["extraConfig"].items():
        exec(compile(code, f"hub.extraConfig.{name}", "exec"), {"c": c})
    env = c.KubeSpawner.environment
    assert callable(env["LABKIT_API_KEY"]) and env["LABKIT_BASE_URL"].endswith("/api/v1")
