"""The serving package stands alone: it can be shipped and read without the pipeline."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = ("pipeline", "components", "tfx")


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_serving_module_imports_the_pipeline_its_components_or_tfx():
    offenders = {str(path.relative_to(REPO)): sorted(imported_packages(path) & set(FORBIDDEN))
                 for path in (REPO / "serving").glob("*.py")}
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_server_and_the_operations_load_without_them():
    code = ("import sys, serving.server, serving.operations, serving.deployment, "
            "serving.server_files; print(sorted({m.split('.')[0] for m in sys.modules} & "
            f"{set(FORBIDDEN)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
