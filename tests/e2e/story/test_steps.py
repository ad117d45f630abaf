"""End-to-end runs of the real pipeline: real TFX components, a real MLMD store, real
SavedModels. The story (tests/e2e/story/conftest.py) is one workspace as a scheduled pipeline
lives it: spans arrive, runs push or refuse, bad spans are stopped, served requests come
back labelled as the next span, whose push the server rolls out; each test here checks one
of its steps. The exported model, the TFX CLI and `mlops run`'s re-run are checked on the
session's shared pushed workspace (tests/conftest.py).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components import versioned_pusher
from tests.conftest import REPO, PushedWorkspace
from tests.e2e.story.conftest import Story

pytestmark = pytest.mark.slow


def versions(config) -> list[int]:
    return versioned_pusher.existing_versions(config.serving_model_dir)


def test_first_run_pushes_version_1(story: Story):
    report = story.runs["first_push"]
    assert report.succeeded, report.error
    assert report.span == 1
    assert report.blessed is True
    assert report.pushed_version == "1"
    assert {c.name: c.state for c in report.components}["Pusher"] == "done"
    manifest = versioned_pusher.read_manifest(os.path.join(story.config.serving_model_dir, "1"))
    assert manifest["version"] == 1 and manifest["model_uri"].startswith(story.config.pipeline.root)
    assert manifest["pipeline_run"] == report.run_id  # the run the report read, by its id
    assert all(check.passed and check.value is not None for check in report.metrics)


def test_unmeetable_threshold_pushes_nothing_and_says_why(story: Story):
    report = story.runs["refused"]
    assert report.succeeded
    assert report.blessed is False
    assert report.pushed_version is None
    assert report.not_pushed_reason == "model not blessed"
    failures = [m for check in report.metrics for m in check.failures]
    assert failures and "below the lower bound 1" in failures[0]


def test_span_with_a_missing_column_stops_before_training(story: Story):
    report = story.runs["missing_column"]
    assert not report.succeeded
    assert "feature 'fare': column is missing" in report.error
    states = {c.name: c.state for c in report.components}
    assert states["DataValidationGate"] == "failed"
    assert states["Trainer"] == "not run" and states["Pusher"] == "not run"
    assert report.pushed_version is None


def test_span_with_a_wrong_type_stops_before_training(story: Story):
    report = story.runs["wrong_type"]
    assert not report.succeeded
    assert "feature 'trip_miles': declared numeric but holds text in " in report.error
    assert "'far' (" in report.error and "declare the column under features.categorical" \
        in report.error
    assert {c.name: c.state for c in report.components}["Transform"] == "not run"
    assert report.pushed_version is None


def test_new_span_pushes_a_higher_version(story: Story):
    report = story.runs["second_push"]
    assert report.succeeded, report.error
    assert report.span == 2
    assert report.baseline_compared, "the served model must be the baseline"
    assert report.pushed_version == "2"


def test_unchanged_rerun_trains_nothing_and_pushes_nothing(story: Story):
    """A push changed what is served, so ServingBaseline copies the new version, and the
    Evaluator (which finds the baseline is the candidate itself and judges on absolute
    thresholds) and the Pusher (which sees the model is served) run again; data
    processing and training are cache hits."""
    report = story.runs["unchanged"]
    assert report.succeeded, report.error
    states = {c.name: c.state for c in report.components}
    for name in ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                 "DataValidationGate", "Transform", "Trainer"):
        assert states[name] == "cached", states
    assert report.pushed_version is None
    assert report.not_pushed_reason == "model already serving as version 2"
    assert story.served_after["unchanged"] == [1, 2]  # refused and stopped runs pushed nothing


def test_labelled_requests_become_the_span_the_next_run_trains_on(story: Story):
    """The loop back from serving: the requests the server logged with their keys, joined
    to the labels known later, are span 3, and the next run trains on it."""
    loop = story.requests
    made = loop.span_from_requests
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"Wrote span 3: {len(loop.labels)} labelled requests -> ")
    with open(loop.span_file, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(loop.labels) and loop.sent - len(loop.labels) > 0
    assert {row["request_key"]: row["tips"] for row in written} == loop.labels
    report = story.runs["from_requests"]
    assert report.succeeded, report.error
    assert report.span == 3


def test_the_push_of_served_traffic_rolls_out_on_live_checks_and_is_promoted(story: Story):
    """The loop closed: labels posted to the server were kept (nothing to join them to
    then: no rollout was running), made span 3, and its run's push became the candidate
    beside version 2, judged every second on the traffic, the skew of its own training
    data added by `mlops skew --rollout`, and promoted."""
    from serving.rollout.records import RolloutFiles

    loop, rollout = story.requests, story.rollout
    assert loop.posted["labels"] == len(loop.labels) and loop.posted["joined"] == 0
    assert Path(loop.posted["kept"]).is_file()
    assert rollout.version == 3
    files = RolloutFiles(story.config.serving.base_directory, story.config.serving.model_name)
    state = files.read_state()
    assert (state.state, state.champion, state.candidate) == ("promoted", 3, None), state
    intervals = [d for d in files.decisions(candidate=3) if d["event"] == "interval"]
    assert intervals[-1]["next"] == "promote" and intervals[-1]["champion"] == 2
    skew_verdict = "fail" if rollout.skew.returncode == 1 else "pass"
    assert rollout.skew.returncode in (0, 1), rollout.skew.stderr
    assert f"Rollout: the skew check of candidate 3 recorded ({skew_verdict})" in \
        rollout.skew.stdout + rollout.skew.stderr
    judged = [c for d in intervals for c in d["checks"] if c["name"] == "skew"]
    assert judged and {c["verdict"] for c in judged} == {skew_verdict}
    assert rollout.served == [3]
    assert {"2", "3"} <= rollout.answered_by.keys()  # both answered while it ran


def test_exported_model_serves_raw_features_and_tf_examples(pushed_workspace: PushedWorkspace):
    """serving_default takes named raw inputs in the data's own types (missing floats as
    NaN, text as ""); classify takes serialized tf.Examples of the same values and carries
    TF Serving's classify method name."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    config = pushed_workspace.config
    export_dir = str(pushed_workspace.model_dir)
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


def _tfx(arguments: list[str], capfd: pytest.CaptureFixture) -> tuple[int, str, str]:
    """The `tfx` console script's command group, run in this process (its exit code,
    stdout, stderr): what the script runs, without importing TFX once more per command.
    The pipeline file still runs in a new interpreter, started by TFX's handler."""
    from tfx.tools.cli import cli_main

    capfd.readouterr()
    try:
        cli_main.cli_group.main(arguments, prog_name="tfx", standalone_mode=False)
        code = 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:  # the handlers end a failed command with sys.exit(message): status 1
            print(exit_.code, file=sys.stderr)
            code = 1
    out, err = capfd.readouterr()
    return code, out, err


def test_tfx_cli_creates_and_runs_the_pipeline(pushed_workspace: PushedWorkspace,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capfd: pytest.CaptureFixture):
    """The TFX CLI's local engine runs pipeline/local_runner.py with our config (on the
    shared workspace: a re-run that changes nothing served)."""
    monkeypatch.setenv("MLOPS_CONFIG", str(pushed_workspace.config_file))
    monkeypatch.setenv("LOCAL_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    monkeypatch.chdir(REPO)
    code, out, err = _tfx(["pipeline", "create", "--engine", "local",
                           "--pipeline_path", "pipeline/local_runner.py"], capfd)
    assert code == 0, err[-3000:]
    assert 'Pipeline "chicago-taxi" created successfully.' in out
    code, out, err = _tfx(["run", "create", "--engine", "local",
                           "--pipeline_name", "chicago-taxi"], capfd)
    assert code == 0, err[-3000:]
    # the first re-run evaluates against the version it pushed; any later one is all cached
    assert ("Nothing pushed: nothing changed since the last run" in out
            or "Nothing pushed: model already serving as version 1" in out), out[-3000:]
    assert versions(pushed_workspace.config) == [1]


def test_mlops_run_answers_an_unchanged_rerun_at_once(pushed_workspace: PushedWorkspace):
    """On the shared workspace: a re-run through TFX pushes nothing, and the next one
    answers from the last run's record without starting TFX."""
    config_file = pushed_workspace.config_file
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
    record = json.loads((pushed_workspace.folder / "build/pipeline_root/.mlops/"
                                                 "last_completed_run.json").read_text())
    assert record["run_id"] in second.stdout
