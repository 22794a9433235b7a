"""The JupyterHub configurations that ship (deploy/) name only options JupyterHub 6 and its plugins know,
checked against the real classes (the z2jh file's `hub.config` and `hub.extraConfig` too)."""

from __future__ import annotations

import csv
import grp
import os
import pwd
import sys
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


@pytest.fixture
def one_machine_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What deploy/one-machine.sh would give the config: a keys file and a students' group that exists."""
    monkeypatch.setenv("LABKIT_KEYS_FILE", str(tmp_path / "keys.csv"))
    monkeypatch.setenv("LABKIT_HUB_STUDENTS", grp.getgrgid(os.getgid()).gr_name)
    monkeypatch.setenv("LABKIT_HUB_STATE", str(tmp_path / "state"))
    for name in ("LABKIT_BASE_URL", "LABKIT_HUB_ADMINS", "LABKIT_HUB_IDLE_TIMEOUT", "LABKIT_PRACTICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_single_machine_config_names_real_options(one_machine_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(DEPLOY / "jupyterhub_config.py")
    assert unknown_options(config) == []
    assert config.Spawner.default_url == "/lab"
    env = config.Spawner.environment
    assert env["LABKIT_BASE_URL"] == "http://127.0.0.1:8008/api/v1" and env["LABKIT_LANG"] == "zh"
    # students' servers, the proxy and the culler run from the hub's own environment, never from PATH
    bin_dir = str(Path(sys.executable).parent)
    assert env["PATH"].split(":")[0] == bin_dir and config.Spawner.cmd == [f"{bin_dir}/jupyterhub-singleuser"]
    assert config.ConfigurableHTTPProxy.command == [f"{bin_dir}/configurable-http-proxy"]
    services = {s["name"]: s for s in config.JupyterHub.services}
    assert services["idle-culler"]["command"][:3] == [sys.executable, "-m", "jupyterhub_idle_culler"]
    assert "--timeout=3600" in services["idle-culler"]["command"]
    practice = services["labkit-practice"]["command"]  # no backend given: the practice server, keys from the file
    assert practice[1:2] == ["practice"] and practice[practice.index("--api-key-file") + 1].endswith("keys.csv")
    assert "--api-key" not in practice and practice[practice.index("--host") + 1] == "127.0.0.1"
    assert config.JupyterHub.db_url.startswith(f"sqlite:///{one_machine_env / 'state'}")
    monkeypatch.setenv("LABKIT_BASE_URL", "http://10.0.0.5:8008/api/v1")
    monkeypatch.setenv("LABKIT_HUB_IDLE_TIMEOUT", "20")
    config = load(DEPLOY / "jupyterhub_config.py")
    assert config.Spawner.environment["LABKIT_BASE_URL"] == "http://10.0.0.5:8008/api/v1"
    assert [s["name"] for s in config.JupyterHub.services] == ["idle-culler"]
    assert "--timeout=20" in config.JupyterHub.services[0]["command"]


def test_single_machine_config_refuses_names_that_do_not_exist(one_machine_env: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HUB_ADMINS", "no-such-ta-account")
    with pytest.raises(SystemExit, match="TA account 'no-such-ta-account' .* does not exist: `useradd"):
        load(DEPLOY / "jupyterhub_config.py")
    monkeypatch.setenv("LABKIT_HUB_ADMINS", pwd.getpwuid(os.getuid()).pw_name)
    assert load(DEPLOY / "jupyterhub_config.py").Authenticator.admin_users == {pwd.getpwuid(os.getuid()).pw_name}
    monkeypatch.setenv("LABKIT_HUB_STUDENTS", "no-such-students-group")
    with pytest.raises(SystemExit, match="group 'no-such-students-group' does not exist: `groupadd"):
        load(DEPLOY / "jupyterhub_config.py")


def test_single_machine_config_reads_hub_env_beside_it(one_machine_env: Path) -> None:
    (one_machine_env / "jupyterhub_config.py").write_text((DEPLOY / "jupyterhub_config.py").read_text())
    (one_machine_env / "hub.env").write_text("# written by one-machine.sh\nLABKIT_HUB_IDLE_TIMEOUT=90\n"
                                             "LABKIT_PRACTICE_PORT=9009\n")
    config = load(one_machine_env / "jupyterhub_config.py")
    assert "--timeout=90" in config.JupyterHub.services[0]["command"]
    assert config.Spawner.environment["LABKIT_BASE_URL"] == "http://127.0.0.1:9009/api/v1"


def test_single_machine_config_gives_each_student_their_key(one_machine_env: Path) -> None:
    keys = one_machine_env / "keys.csv"
    with keys.open("w", newline="") as f:
        csv.writer(f).writerows([("ada", "sk-ada-1"), ("bo", "sk-bo-2")])
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
