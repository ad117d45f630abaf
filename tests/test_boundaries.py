"""The rooms keep to their doors: what each package may import, checked on every module.

- `serving/` (every subfolder) stands alone: it is shipped and read without the pipeline,
  its components, the model code or TFX (the real server's replacement needs none of them).
- `models/` (features, preprocessing, the model) is free of orchestration: it runs inside
  TFX's Transform and Trainer, and outside them, knowing nothing of either.
- `components/` are the pipeline's parts, not its wiring: they never import `pipeline/`.
- `pipeline/cli/` is the top: nothing imports it.
- In `serving/`, the data plane knows no protocol: only the server, which assembles REST
  and gRPC over it, and the warm-up, which replays TF Serving's recorded gRPC requests,
  import `serving.protocol`.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "serving": {"pipeline", "components", "models", "tfx"},
    "models": {"pipeline", "components", "serving", "tfx"},
    "components": {"pipeline"},
}
PROTOCOL_USERS = {"serving/server.py", "serving/warmup.py"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement of `path` names (`a.b` for `from a.b import c`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules_of(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def offenders(paths: list[Path], forbidden_prefixes: set[str]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(m for m in imported_modules(path)
                     if any(m == p or m.startswith(p + ".") for p in forbidden_prefixes))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_it_must_not(package: str):
    assert modules_of(package), f"no modules found under {package}/"
    assert offenders(modules_of(package), FORBIDDEN[package]) == {}


def test_the_rules_see_subfolders():
    """A module in a subfolder is checked like any other (serving/protocol, pipeline/cli)."""
    assert REPO / "serving" / "protocol" / "rest.py" in modules_of("serving")


def test_nothing_imports_the_command_line():
    outside = [p for p in REPO.glob("*/**/*.py")
               if p.parts[len(REPO.parts)] in {"pipeline", "components", "models", "serving"}
               and "cli" not in p.relative_to(REPO).parts[:2]]
    assert offenders(outside, {"pipeline.cli"}) == {}


def test_the_data_plane_knows_no_protocol():
    core = [p for p in (REPO / "serving").glob("*.py")
            if str(p.relative_to(REPO)) not in PROTOCOL_USERS]
    assert offenders(core, {"serving.protocol"}) == {}


def test_the_server_and_the_operations_load_without_them():
    """Not only the import statements: nothing they import pulls the pipeline in either."""
    code = ("import sys, serving.server, serving.operations, serving.deployment, "
            "serving.server_files, models.features, models.preprocessing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            f"{set(FORBIDDEN['serving']) - {'models'}!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
