"""End-to-end runs of the real pipeline: real TFX components, a real MLMD store, real
SavedModels. One workspace is shared by the scenarios, in order, as a scheduled pipeline
would live: spans arrive, runs push or refuse, bad spans are stopped.

Small data (1,500 rows a span) and few training steps keep each full run to about a
minute on 2 cores; a run that only re-evaluates is much shorter thanks to TFX's cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components import versioned_pusher
from pipeline import local
from pipeline.config import load_config
from tests.conftest import REPO, copy_taxi_span, write_config

pytestmark = pytest.mark.slow

ROWS = 1500
FAST_TRAINING = {"training.train_steps": 150, "training.eval_steps": 10,
                 "training.batch_size": 64}
# Generous regression allowance: these tests are about the push mechanics, not model quality.
LENIENT = {"evaluation.thresholds": [
    {"metric": "BinaryAccuracy", "lower_bound": 0.6, "max_regression": 0.2},
    {"metric": "AUC", "lower_bound": 0.6, "max_regression": 0.2}]}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline_site")
    (folder / "data").mkdir()
    copy_taxi_span(1, folder / "data", rows=ROWS)
    return folder


def run(site: Path, **changes):
    config = load_config(write_config(site, {**FAST_TRAINING, **LENIENT, **changes}))
    return config, local.run_pipeline(config)


def versions(config) -> list[int]:
    return versioned_pusher.existing_versions(config.serving_model_dir)


def test_first_run_pushes_version_1(site: Path):
    config, report = run(site)
    assert report.succeeded, report.error
    assert report.span == 1
    assert report.blessed is True
    assert report.pushed_version == "1"
    assert versions(config) == [1]
    assert {c.name: c.state for c in report.components}["Pusher"] == "done"
    manifest = versioned_pusher.read_manifest(os.path.join(config.serving_model_dir, "1"))
    assert manifest["version"] == 1 and manifest["model_uri"].startswith(config.pipeline.root)
    assert manifest["pipeline_run"] == report.run_id  # the run the report read, by its id
    assert all(check.passed and check.value is not None for check in report.metrics)


def test_exported_model_serves_raw_features_and_tf_examples(site: Path):
    """serving_default takes named raw inputs in the data's own types (missing floats as
    NaN, text as ""); classify takes serialized tf.Examples of the same values and carries
    TF Serving's classify method name."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    config = load_config(write_config(site, {**FAST_TRAINING, **LENIENT}))
    export_dir = os.path.join(config.serving_model_dir, "1")
    loaded = tf.saved_model.load(export_dir)
    serving = loaded.signatures["serving_default"]
    inputs = {name: spec for name, spec in serving.structured_input_signature[1].items()}
    assert set(inputs) == set(config.features.all_names())
    assert inputs["fare"].dtype == tf.float32 and inputs["payment_type"].dtype == tf.string
    assert inputs["trip_start_hour"].dtype == tf.int64  # an integer column of the CSV
    assert inputs["trip_seconds"].dtype == tf.int64

    def column(name, present, missing):
        return tf.constant([present, missing], dtype=inputs[name].dtype)

    rows = {name: (column(name, 12.0, float("nan")) if inputs[name].dtype == tf.float32
                   else column(name, 8, 9) if inputs[name].dtype == tf.int64
                   else column(name, "Credit Card" if name == "payment_type" else "", ""))
            for name in inputs}
    outputs = serving(**rows)
    assert outputs["scores"].shape == (2, 2)
    assert [c.decode() for c in outputs["classes"].numpy()[0]] == ["no_tip", "tip"]
    scores = outputs["scores"].numpy()
    assert ((scores >= 0) & (scores <= 1)).all() and abs(scores.sum(axis=1) - 1).max() < 1e-5

    example = tf.train.Example()  # the first row's values, "" (missing) left out
    for name, values in rows.items():
        value = values.numpy()[0]
        feature = example.features.feature
        if values.dtype == tf.float32:
            feature[name].float_list.value.append(value)
        elif values.dtype == tf.int64:
            feature[name].int64_list.value.append(value)
        elif value:
            feature[name].bytes_list.value.append(value)
    classify = loaded.signatures["classify"]
    result = classify(inputs=tf.constant([example.SerializeToString()]))
    assert result["scores"].shape == (1, 2)
    assert abs(result["scores"].numpy()[0] - scores[0]).max() < 1e-5

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(Path(export_dir, "saved_model.pb").read_bytes())
    signatures = saved_model.meta_graphs[0].signature_def
    assert signatures["classify"].method_name == "tensorflow/serving/classify"
    assert list(signatures["classify"].inputs) == ["inputs"]


def test_unmeetable_threshold_pushes_nothing_and_says_why(site: Path):
    config, report = run(site, **{"evaluation.thresholds": [
        {"metric": "BinaryAccuracy", "lower_bound": 1.0, "max_regression": None}]})
    assert report.succeeded
    assert report.blessed is False
    assert report.pushed_version is None
    assert report.not_pushed_reason == "model not blessed"
    failures = [m for check in report.metrics for m in check.failures]
    assert failures and "below the lower bound 1" in failures[0]
    assert versions(config) == [1]


def test_span_with_a_missing_column_stops_before_training(site: Path):
    copy_taxi_span(2, site / "data", rows=ROWS, drop_columns=["fare"])
    config, report = run(site)
    assert not report.succeeded
    assert "feature 'fare': column is missing" in report.error
    states = {c.name: c.state for c in report.components}
    assert states["DataValidationGate"] == "failed"
    assert states["Trainer"] == "not run" and states["Pusher"] == "not run"
    assert report.pushed_version is None and versions(config) == [1]


def test_span_with_a_wrong_type_stops_before_training(site: Path):
    def text_in_numbers(records):
        for index, record in enumerate(records):
            if index % 10 == 0:
                record["trip_miles"] = "far"
            yield record

    copy_taxi_span(2, site / "data", rows=ROWS, edit=text_in_numbers)
    config, report = run(site)
    assert not report.succeeded
    assert "feature 'trip_miles': declared numeric but holds text in " in report.error
    assert "'far' (" in report.error and "declare the column under features.categorical" \
        in report.error
    assert {c.name: c.state for c in report.components}["Transform"] == "not run"
    assert versions(config) == [1]


def test_new_span_pushes_a_higher_version(site: Path):
    copy_taxi_span(2, site / "data", rows=ROWS)
    config, report = run(site)
    assert report.succeeded, report.error
    assert report.span == 2
    assert report.baseline_compared, "the served model must be the baseline"
    assert report.pushed_version == "2"
    assert versions(config) == [1, 2]


def test_unchanged_rerun_trains_nothing_and_pushes_nothing(site: Path):
    """A push changed what is served, so ServingBaseline copies the new version, and the
    Evaluator (which finds the baseline is the candidate itself and judges on absolute
    thresholds) and the Pusher (which sees the model is served) run again; data
    processing and training are cache hits."""
    config, report = run(site)
    assert report.succeeded, report.error
    states = {c.name: c.state for c in report.components}
    for name in ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                 "DataValidationGate", "Transform", "Trainer"):
        assert states[name] == "cached", states
    assert report.pushed_version is None
    assert report.not_pushed_reason == "model already serving as version 2"
    assert versions(config) == [1, 2]


def test_tfx_cli_creates_and_runs_the_pipeline(site: Path, tmp_path: Path):
    """The TFX CLI's local engine runs pipeline/local_runner.py with our config."""
    config_file = write_config(site, {**FAST_TRAINING, **LENIENT})
    env = {**os.environ, "MLOPS_CONFIG": str(config_file), "LOCAL_HOME": str(tmp_path),
           "PYTHONWARNINGS": "ignore"}
    tfx = str(Path(sys.executable).parent / "tfx")
    create = subprocess.run(
        [tfx, "pipeline", "create", "--engine", "local",
         "--pipeline_path", "pipeline/local_runner.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert create.returncode == 0, create.stderr[-3000:]
    assert 'Pipeline "chicago-taxi" created successfully.' in create.stdout
    run_cli = subprocess.run(
        [tfx, "run", "create", "--engine", "local", "--pipeline_name", "chicago-taxi"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run_cli.returncode == 0, run_cli.stderr[-3000:]
    assert "Nothing pushed: nothing changed since the last run" in run_cli.stdout
    assert versions(load_config(config_file)) == [1, 2]


def test_mlops_run_answers_an_unchanged_rerun_at_once(site: Path):
    config_file = write_config(site, {**FAST_TRAINING, **LENIENT})
    command = [str(Path(sys.executable).parent / "mlops"), "run", "--config", str(config_file)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Nothing pushed" in first.stdout
    # piped, progress is plain lines: each component's start and end, with its time
    assert "Trainer: running" in first.stdout.splitlines()
    assert any(line.startswith(("Evaluator: finished (", "Evaluator: cached ("))
               for line in first.stdout.splitlines())
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0
    assert second.stdout.startswith("Nothing changed since run ")
    assert "Nothing pushed" in second.stdout
    record = json.loads((site / "build/pipeline_root/.mlops/last_completed_run.json").read_text())
    assert record["run_id"] in second.stdout
