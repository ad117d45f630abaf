"""Shared fixtures: temporary workspaces with their own config, data and stores.

Every test writes under pytest's tmp_path; nothing touches the repo's build/ or
serving_models/. Library noise is quieted as in normal runs.

The expensive part of the suite is running the real pipeline. One cold run that pushes
version 1 (`pushed_workspace`) is made once per test session, shared by every test that
only reads a pushed workspace (the serving tests' model, skew, the exported model, the
TFX CLI's re-run): even across pytest-xdist's worker processes, the first one to ask
builds it under a file lock and the others read what it recorded. Tests that need a
history of their own (a span that arrives, a refused run) make their own workspace.
A test that asks for a pipeline-made model is marked `slow` here, so `make test-fast`
trains nothing.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pytest
import yaml

from pipeline.definition.config import PipelineConfig, load_config
from pipeline.records.summary import RunReport
from pipeline.runtime import process

process.prepare(verbose=False)

REPO = Path(__file__).resolve().parents[1]
TAXI_DATA = REPO / "data" / "chicago_taxi"
MLOPS = str(Path(sys.executable).parent / "mlops")  # the console script of this environment

# The end-to-end runs' size: 1,500 rows a span and 150 training steps make a model that
# serves and evaluates like the real one (accuracy about 0.97) in a few seconds of training.
ROWS = 1500
FAST_TRAINING = {"training.train_steps": 150, "training.eval_steps": 10,
                 "training.batch_size": 64}
# Generous regression allowance: these runs are about mechanics, not model quality.
LENIENT = {"evaluation.thresholds": [
    {"metric": "BinaryAccuracy", "lower_bound": 0.6, "max_regression": 0.2},
    {"metric": "AUC", "lower_bound": 0.6, "max_regression": 0.2}]}
# Fixtures that run the real pipeline: a test that uses one is slow (see the module doc).
PIPELINE_FIXTURES = frozenset({"pushed_workspace", "pipeline_model"})


def mlops(*args: str, **options) -> subprocess.CompletedProcess:
    """Runs `mlops ARGS` as a user would, capturing its output."""
    return subprocess.run([MLOPS, *args], capture_output=True, text=True,
                          **{"timeout": 120, **options})


def mlops_in_process(*args: str, env: Optional[dict[str, str]] = None
                     ) -> subprocess.CompletedProcess:
    """Runs `mlops ARGS` through the app itself in this process (typer's CliRunner): the
    same command and output as `mlops()`, without a new interpreter importing TensorFlow
    or Beam again. Not for the commands that end their process (`run`, `report`)."""
    from typer.testing import CliRunner

    from pipeline.cli.main import app

    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["mlops", *args], result.exit_code, result.stdout,
                                       result.stderr)


def one_error_line(result) -> str:
    """A failed command's only stderr line (typer's CliRunner result): `error: ...`, with no
    traceback and no library noise."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


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


@dataclasses.dataclass(frozen=True)
class PushedWorkspace:
    """A workspace whose first run pushed version 1: span 1 of the taxi data (`ROWS` rows),
    `FAST_TRAINING`, `LENIENT` thresholds. Shared: read it, never change it."""

    folder: Path
    config_file: Path
    config: PipelineConfig
    report: RunReport  # the run's record, as `mlops history` reads it

    @property
    def model_dir(self) -> Path:
        """Version 1 as the Pusher wrote it."""
        return Path(self.config.serving_model_dir) / "1"


def shared_run_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every pytest-xdist worker of this session sees (the workers' common
    parent of their base temp dirs), or the session's own without xdist."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return root / name


@pytest.fixture(scope="session")
def pushed_workspace(tmp_path_factory: pytest.TempPathFactory) -> PushedWorkspace:
    """The session's one cold run that pushes version 1 (see the module doc)."""
    from pipeline.local.run import run_pipeline
    from pipeline.records import store

    folder = shared_run_folder(tmp_path_factory, "pushed_workspace")
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "run.json"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.is_file():
            (folder / "data").mkdir(exist_ok=True)
            copy_taxi_span(1, folder / "data", rows=ROWS)
            config = load_config(write_config(folder, {**FAST_TRAINING, **LENIENT}))
            report = run_pipeline(config)
            assert report.succeeded and report.pushed_version == "1", report.error
            done.write_text(json.dumps({"run_id": report.run_id}))
    config_file = folder / "pipeline_config.yaml"
    config = load_config(config_file)
    report = store.load(config, json.loads(done.read_text())["run_id"])
    return PushedWorkspace(folder, config_file, config, report)


# The longest groups start first, so that the workers finish together (the Kubeflow run
# runs take a few minutes each); within a group the order is the files' own.
LONGEST_FIRST = ("tests/e2e/test_kubeflow_on_", "tests/e2e/story/", "tests/e2e/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the tests that make the pipeline train as slow (see the module doc), and puts
    the longest groups first."""
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

    def start_rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0]
        return next((rank for rank, prefix in enumerate(LONGEST_FIRST)
                     if module.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=start_rank)  # stable: each module keeps its own order


# Test modules that share one pytest-xdist worker, because they read one expensive
# session fixture (tests/e2e/story/: the pipeline's story).
SHARED_WORKER_FOLDERS = ("tests/e2e/story/",)


def worker_group(nodeid: str) -> str:
    """The unit pytest-xdist hands a worker: a test's module, where its module-scoped
    fixtures and ordered scenarios live, or a whole folder of SHARED_WORKER_FOLDERS."""
    module = nodeid.split("::")[0]
    return next((folder for folder in SHARED_WORKER_FOLDERS if module.startswith(folder)),
                module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`--numprocesses=auto`: for the whole suite one worker more than the cores, since
    about a fifth of a worker's time is waiting on what the tests start (task processes,
    servers of the stores' APIs, served requests); for `make test-fast` (`-m "not slow"`),
    which waits on little, one per core, as each worker also pays the collection's imports
    (figures in docs/performance.md "The test suite")."""
    cores = os.cpu_count() or 1
    return cores if "not slow" in (config.option.markexpr or "") else cores + 1


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (-p no:xdist) it is not called
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Each worker takes whole groups (`worker_group`), in the collection's order.

    xdist's own `--dist loadgroup` marks groups by rewriting node ids, which pytest 9 no
    longer lets a plugin do; scheduling by scope is the supported way."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    config.option.loadscopereorder = False  # the collection's order: LONGEST_FIRST
    return ByGroup(config, log)


@pytest.fixture(scope="session")
def local_gcs(tmp_path_factory: pytest.TempPathFactory):
    """fake-gcs-server behind an HTTPS proxy for *.googleapis.com (tests/object_stores.py)."""
    from tests.object_stores import LocalGcs

    store = LocalGcs(tmp_path_factory.mktemp("gcs"))
    yield store
    store.close()


@pytest.fixture(scope="session")
def local_s3():
    """moto's S3 server (tests/object_stores.py)."""
    from tests.object_stores import LocalS3

    store = LocalS3()
    yield store
    store.close()


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
    `process.exit_now`); the exit status is pytest's own.
    """
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)

