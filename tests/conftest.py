"""Shared fixtures: temporary workspaces with their own config, data and stores.

Every test writes under pytest's tmp_path; nothing touches the repo's build/ or
serving_models/. Library noise is quieted as in normal runs.
"""
from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pytest
import yaml

from pipeline import process
from pipeline.config import load_config

process.prepare(verbose=False)

REPO = Path(__file__).resolve().parents[1]
TAXI_DATA = REPO / "data" / "chicago_taxi"
MLOPS = str(Path(sys.executable).parent / "mlops")  # the console script of this environment


def mlops(*args: str, **options) -> subprocess.CompletedProcess:
    """Runs `mlops ARGS` as a user would, capturing its output."""
    return subprocess.run([MLOPS, *args], capture_output=True, text=True,
                          **{"timeout": 120, **options})


def repo_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "pipeline_config.yaml").read_text())


def set_key(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def write_config(folder: Path, changes: Optional[dict[str, Any]] = None,
                 base: Optional[dict] = None) -> Path:
    """A config file in `folder`, from the repo's (or `base`), with dotted-key changes.

    Paths point inside `folder`: build/, serving_models/ and data/.
    """
    raw = copy.deepcopy(base if base is not None else repo_config())
    defaults = {"pipeline.root": "build/pipeline_root",
                "pipeline.metadata_path": "build/metadata.sqlite",
                "serving.base_directory": "serving_models",
                "data.input_base": "data"}
    for key, value in {**defaults, **(changes or {})}.items():
        set_key(raw, key, value)
    path = folder / "pipeline_config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def copy_taxi_span(span: int, destination: Path, rows: Optional[int] = None,
                   edit: Optional[Callable[[list[dict]], Iterable[dict]]] = None,
                   drop_columns: Iterable[str] = ()) -> Path:
    """Copies one bundled taxi span (optionally cut, edited or with columns dropped)."""
    source = TAXI_DATA / f"span-{span}" / "trips.csv"
    with open(source, newline="") as handle:
        reader = csv.DictReader(handle)
        header = [c for c in reader.fieldnames if c not in set(drop_columns)]
        records = list(reader)[:rows] if rows else list(reader)
    if edit:
        records = list(edit(records))
    folder = destination / f"span-{span}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "trips.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return folder


def executor_beam_args(*options: str) -> list[str]:
    """Beam options for calling an executor directly, with the code dependency the builder
    adds (without one, TFX builds an sdist of itself in every executor)."""
    return [*options, f"--setup_file={REPO / 'setup.py'}"]


def write_curated_schema(config_file: Path, leave_out: str = "", text_typed: str = "") -> str:
    """A schema.pbtxt beside the config with every declared column (bar `leave_out`; text
    typed for categorical ones, the label and `text_typed`); returns the override naming it."""
    contract = load_config(config_file).data_contract()
    lines = [f'feature {{ name: "{name}" type: '
             f'{"BYTES" if kind in ("categorical", "label") or name == text_typed else "FLOAT"} }}'
             for name, kind in contract.items() if name != leave_out]
    (config_file.parent / "schema.pbtxt").write_text("\n".join(lines) + "\n")
    return "data.schema_path=schema.pbtxt"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


@pytest.fixture
def config_file(workspace: Path) -> Path:
    """The repo's config in a workspace holding 20 rows of the first taxi span."""
    copy_taxi_span(1, workspace / "data", rows=20)
    return write_config(workspace)


@pytest.fixture(autouse=True)
def _no_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the overrides they set themselves."""
    for name in list(os.environ):
        if name.startswith("MLOPS__") or name == "MLOPS_CONFIG":
            monkeypatch.delenv(name)


_exit_status = 0


def pytest_sessionfinish(session, exitstatus) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Leaves without Python's module teardown, once pytest has reported everything.

    TF 2.16 prints "Exception ignored in AtomicFunction.__del__" tracebacks for every
    SavedModel function still alive while modules are torn down (as `mlops` does, see
    pipeline/cli.py `_exit`); the exit status is pytest's own.
    """
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)

