"""The deployment files that ship parse and name real options: the Zero to JupyterHub values against the
option paths of the chart's values schema (deploy/z2jh/values-paths.txt), environment.yml against
pyproject. (deploy/jupyterhub_config.py is run against JupyterHub itself in tests/hub.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from support import ROOT

Z2JH = ROOT / "deploy" / "z2jh"


def chart_paths() -> tuple[set[str], set[str]]:
    """(known paths, open prefixes: any key below them is accepted)."""
    text = (Z2JH / "values-paths.txt").read_text()
    lines = [line.strip() for line in text.splitlines() if line and not line.startswith("#")]
    return {p for p in lines if not p.endswith(".*")}, {p[:-2] for p in lines if p.endswith(".*")}


def value_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key path in a values mapping (lists are values: not walked)."""
    if isinstance(node, dict):
        for key, child in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from value_paths(child, path)


def unknown_paths(values: dict[str, Any]) -> list[str]:
    known, open_prefixes = chart_paths()
    bad = []
    for path in value_paths(values):
        parents = [path.rsplit(".", n)[0] for n in range(1, path.count(".") + 1)]
        if path not in known and not any(p in open_prefixes for p in parents):
            bad.append(path)
    return bad


def z2jh_values() -> dict[str, Any]:
    return yaml.safe_load((Z2JH / "config.yaml").read_text(encoding="utf-8"))


def test_the_path_list_comes_from_the_chart_the_config_names() -> None:
    header = (Z2JH / "values-paths.txt").read_text().splitlines()[0]
    version = re.search(r"chart (\S+),", header)
    assert version, header
    assert f"--version {version.group(1)}" in (Z2JH / "config.yaml").read_text()
    known, open_prefixes = chart_paths()
    assert {"hub.config", "singleuser.extraEnv", "cull.timeout"} <= known and "hub.config" in open_prefixes


def test_z2jh_config_names_only_options_the_chart_knows() -> None:
    assert unknown_paths(z2jh_values()) == []


def test_the_checker_catches_a_misspelt_option() -> None:
    values = z2jh_values()
    values["singleuser"]["memroy"] = {"limit": "2G"}
    values["cull"]["timout"] = 60
    values["singleuser"]["extraEnv"]["ANYTHING"] = "free-form keys are fine here"
    assert unknown_paths(values) == ["singleuser.memroy", "singleuser.memroy.limit", "cull.timout"]


def test_z2jh_config_sets_what_a_class_needs() -> None:
    values = z2jh_values()
    env = values["singleuser"]["extraEnv"]
    assert env["LABKIT_BASE_URL"].endswith("/api/v1")
    labkit_source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "labkit").glob("*.py"))
    for name in env:
        assert name in labkit_source, f"{name} is not a variable labkit reads"
    assert "LABKIT_API_KEY" in values["hub"]["extraConfig"]["labkit-api-keys"]
    compile(values["hub"]["extraConfig"]["labkit-api-keys"], "extraConfig", "exec")
    assert values["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"][0] == "gitpuller"
    assert values["cull"]["enabled"] and values["scheduling"]["userScheduler"]["enabled"]


def test_environment_yml_makes_a_single_user_image() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    conda = {re.split(r"[<>=! ]", d, maxsplit=1)[0] for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # The kit itself, so `labkit` is on the image's PATH, as a copy in the image's environment: repo2docker
    # builds in REPO_DIR=$HOME, which z2jh's home volume hides, so an editable install (-e .) would vanish.
    assert "." in pip and not any(str(line).startswith(("-e", "--editable")) for line in pip), pip
    assert {"python", "jupyterlab", "ipykernel", "nbgitpuller", "jupyterhub-singleuser"} <= conda


def test_z2jh_pods_can_be_scheduled_on_unlabelled_nodes_or_the_readme_says_which_labels() -> None:
    scheduling = z2jh_values()["scheduling"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for pods in ("corePods", "userPods"):
        purpose = scheduling.get(pods, {}).get("nodeAffinity", {}).get("matchNodePurpose", "prefer")
        assert purpose in ("prefer", "ignore") or "hub.jupyter.org/node-purpose" in readme, \
            f"{pods}: matchNodePurpose {purpose} leaves pods Pending on nodes without the label"
    assert "hub.jupyter.org/node-purpose" in readme  # how to keep students off the hub's nodes


def test_the_one_machine_recipe_installs_what_the_config_uses() -> None:
    recipe = (ROOT / "deploy" / "one-machine.sh").read_text(encoding="utf-8")
    config = (ROOT / "deploy" / "jupyterhub_config.py").read_text(encoding="utf-8")
    hub_extra = re.search(r"^hub = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
    for package, module in (("nbgitpuller", "nbgitpuller"), ("jupyterhub-idle-culler", "jupyterhub_idle_culler"),
                            ("jupyterhub", "jupyterhub")):
        assert package in hub_extra and module in recipe, f"{package} is used but not installed"
    assert "jupyterhub_idle_culler" in config and "labkit[lab,hub]" in recipe and "configurable-http-proxy" in recipe
    assert "--api-key " not in config and "--api-key\"" not in config, "a key on a command line"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "deploy/one-machine.sh" in readme and "--api-key KEY" not in readme.split("## For administrators")[1]
