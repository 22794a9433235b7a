"""Derive the list of option paths the Zero to JupyterHub chart accepts, from its values schema.

Usage: python scripts/z2jh_values_paths.py values.schema.yaml CHART_VERSION > deploy/z2jh/values-paths.txt

The chart's ``values.schema.yaml`` (a JSON schema in YAML, in the chart's repository under
``jupyterhub/``) closes most objects with ``additionalProperties: false``. Each line of the output is a
dotted path the chart knows; a path ending in ``.*`` is an object whose keys are free (``hub.config``,
``singleuser.extraEnv``, ...), so anything below it is accepted. tests/test_deploy.py checks
``deploy/z2jh/config.yaml`` against this list.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml


def paths(node: dict[str, Any], prefix: str) -> Iterator[str]:
    """Yield the dotted paths below ``node`` (a schema object), ``prefix.*`` where keys are free."""
    props = node.get("properties") or {}
    open_keys = node.get("additionalProperties", True) is not False or bool(node.get("patternProperties"))
    if open_keys and prefix:
        yield f"{prefix}.*"
    for name, child in props.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        if isinstance(child, dict) and ("properties" in child or "object" in str(child.get("type", ""))):
            yield from paths(child, path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    print(f"# Option paths of the Zero to JupyterHub chart {argv[1]}, derived from its values.schema.yaml")
    print("# by scripts/z2jh_values_paths.py. `a.b.*`: any key below a.b is accepted.")
    for line in sorted(set(paths(schema, ""))):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
