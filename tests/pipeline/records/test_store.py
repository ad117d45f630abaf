"""Run records: a run's summary written as JSON and read back whole, without TensorFlow."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.definition.config import Threshold, load_config
from pipeline.records import store
from pipeline.records.summary import ComponentStatus, MetricCheck, RunReport
from tests.conftest import REPO


def report(run_id: str, **fields) -> RunReport:
    return RunReport("chicago-taxi", run_id, [ComponentStatus("Trainer", "done", 4.2)],
                     span=3, metrics=[MetricCheck("AUC", 0.91, 0.01, Threshold(
                         metric="AUC", lower_bound=0.8), [])], blessed=True,
                     pushed_version="2", **fields)


def test_a_record_reads_back_as_the_report_it_was(config_file: Path):
    config = load_config(config_file)
    original = report("2026-12-01T10:00:00.1", baseline_version=1, finished_at="2026-12-01")
    path = store.save(config, original)
    assert Path(path).parent == Path(config.pipeline.root) / ".mlops" / "runs"
    assert store.load(config, original.run_id) == original
    assert store.load_all(config) == {original.run_id: original}


def test_damaged_or_foreign_files_are_not_runs(config_file: Path):
    config = load_config(config_file)
    store.save(config, report("run-1"))
    folder = Path(store.records_dir(config))
    (folder / "half.json").write_text('{"pipeline_name": ')
    (folder / "other.json").write_text(json.dumps({"hello": 1}))
    (folder / "notes.txt").write_text("x")
    assert list(store.load_all(config)) == ["run-1"]
    assert store.load(config, "missing") is None
    assert store.save(config, report("")) is None


def test_reading_records_imports_no_tensorflow():
    code = "import sys, pipeline.records.store; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout.strip() == "False"
