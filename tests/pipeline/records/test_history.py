"""`mlops history` on made-up runs: run records saved with `records.store`, runs in a real
SQLite ML Metadata store laid out as TFX lays them out (`tfx_metadata`), and push
manifests in the serving directory, without running the pipeline (which takes minutes:
tests/e2e/story/test_history.py does, on real runs).

History lists the runs the metadata store knows (a record alone does not make a run: with
no store, only the push manifests are left), tells each run's verdict from its record or,
without one, from the store, and adds the pushed versions no local run accounts for. Each
pushed version shows how its rollout went, from the server's decisions in the serving
directory (made up here: `rollout_records`).
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from pipeline.definition.config import PipelineConfig, Threshold, load_config
from pipeline.records import history, store
from pipeline.records.summary import ComponentStatus, MetricCheck, RunReport
from serving import versions
from serving.rollout.records import PROGRESSING, RolloutState
from tests.conftest import mlops_in_process
from tests.pipeline.records.rollout_records import aborted, at, start, write_decisions
from tests.pipeline.records.tfx_metadata import State, TfxStore

PIPELINE = "chicago-taxi"
ACCURACY = Threshold(metric="BinaryAccuracy", lower_bound=0.8, max_regression=0.01)
AUC = Threshold(metric="AUC", lower_bound=0.8, max_regression=0.01)
REFUSAL = "binary_accuracy 0.8500 is below the lower bound 1"
KFP_MODEL = "gs://bucket/chicago-taxi/pipeline_root/Trainer/model/99"


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat()


def iso_ms(epoch_ms: int) -> str:
    return iso(datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.timezone.utc))


def artifact(config: PipelineConfig, component: str, number: int) -> str:
    return os.path.join(config.pipeline.root, component, "out", str(number))


def done(*names: str, state: str = "done") -> list[ComponentStatus]:
    return [ComponentStatus(name, state, 1.5) for name in names]


def record(config: PipelineConfig, run_id: str, span: int, **fields) -> RunReport:
    """A run's record as `local.run` saves it when the run ends."""
    values = dict(components=done("CsvExampleGen", "Trainer", "Evaluator", "Pusher"),
                  span=span, examples_uri=artifact(config, "CsvExampleGen", span),
                  statistics_uri=artifact(config, "StatisticsGen", span),
                  schema_uri=artifact(config, "SchemaGen", 1),
                  anomalies_uri=artifact(config, "ExampleValidator", span),
                  finished_at="2026-03-01T10:00:00+00:00")
    report = RunReport(PIPELINE, run_id, **{**values, **fields})
    assert store.save(config, report)
    return report


def checks(accuracy: float, auc: float, failures=(), change=None) -> list[MetricCheck]:
    return [MetricCheck("BinaryAccuracy", accuracy, change, ACCURACY, list(failures)),
            MetricCheck("AUC", auc, change, AUC, [])]


def write_manifest(config: PipelineConfig, folder: str, **manifest) -> Path:
    """A version folder with its push manifest, as `versioned_pusher.publish_model` leaves
    it (the model files themselves do not matter here)."""
    path = Path(config.serving_model_dir, folder, versions.MANIFEST_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2))
    return path


@pytest.fixture
def site(config_file: Path) -> dict:
    """Five runs of the pipeline, in this order, and three pushed versions:

    - run-1: span 1, blessed, pushed as version 1;
    - run-2: spans 1-2, refused by the accuracy threshold;
    - run-3: failed at Transform;
    - run-4: span 2, blessed against version 1, pushed as version 2 (whose manifest,
      from before runs named themselves, has no run id: its model tells the run);
    - run-5: in the metadata store only (it crashed before writing its record);
    - version 3: pushed by a Kubeflow run, known from its push manifest only.

    Plus a run of another pipeline in the same store, which is not this pipeline's.
    """
    config = load_config(config_file)
    now = datetime.datetime.now(datetime.timezone.utc)
    model_1 = artifact(config, "Trainer", 6)
    model_4 = artifact(config, "Trainer", 14)
    reports = {
        "run-1": record(config, "run-1", 1, metrics=checks(0.85, 0.9), evaluated=True,
                        blessed=True, pushed_version="1", model_uri=model_1,
                        pushed_path=os.path.join(config.serving_model_dir, "1"),
                        evaluation_uri=artifact(config, "Evaluator", 1)),
        "run-2": record(config, "run-2", 2, train_spans=2, evaluated=True, blessed=False,
                        metrics=checks(0.85, 0.9, failures=[REFUSAL]),
                        model_uri=artifact(config, "Trainer", 9), baseline_version=1,
                        baseline_compared=True, not_pushed_reason="model not blessed"),
        "run-3": record(config, "run-3", 2,
                        components=[*done("CsvExampleGen"), *done("Transform", state="failed"),
                                    *done("Trainer", "Pusher", state="not run")],
                        error="column 'fare' holds text in 3 of 20 rows\nTraceback: ...",
                        not_pushed_reason="the run stopped before the Pusher"),
        "run-4": record(config, "run-4", 2, metrics=checks(0.86, 0.91, change=0.01),
                        evaluated=True, blessed=True, baseline_compared=True,
                        baseline_version=1, pushed_version="2", model_uri=model_4,
                        pushed_path=os.path.join(config.serving_model_dir, "2"),
                        evaluation_uri=artifact(config, "Evaluator", 4)),
    }
    metadata = TfxStore(config.pipeline.metadata_path)
    started = {}
    for run_id in ("run-1", "run-2", "run-3", "run-4"):
        started[run_id] = metadata.add_run(PIPELINE, run_id)
    metadata.add_run("other-pipeline", "other-run")
    started["run-5"] = metadata.add_run(PIPELINE, "run-5")
    metadata.add_execution(PIPELINE, "run-5", "CsvExampleGen", State.COMPLETE,
                           examples=(artifact(config, "CsvExampleGen", 5), 3))
    metadata.add_execution(PIPELINE, "run-5", "Trainer", State.FAILED)

    write_manifest(config, "1", model_uri=model_1, model_id=6, version=1,
                   pushed_at=iso(now - datetime.timedelta(hours=2)), pipeline_run="run-1")
    write_manifest(config, "2", model_uri=model_4, model_id=14, version=2,
                   pushed_at=iso(now - datetime.timedelta(hours=1)), pipeline_run="")
    kfp_pushed = iso(now + datetime.timedelta(hours=1))
    write_manifest(config, "3", model_uri=KFP_MODEL, model_id=99, version=3,
                   pushed_at=kfp_pushed, pipeline_run="kfp-run-7")
    # not versions: a push still copying (its manifest is written before the rename), a
    # folder TF Serving would not serve, a version copied in by hand (no manifest)
    write_manifest(config, ".staging-1767225600-0a1b2c3d", model_uri="elsewhere",
                   pushed_at=iso(now + datetime.timedelta(hours=2)), pipeline_run="run-9")
    write_manifest(config, "0", model_uri="zero", pushed_at=kfp_pushed, pipeline_run="run-0")
    Path(config.serving_model_dir, "7").mkdir()
    Path(config.serving_model_dir, versions.VERSION_RECORD).write_text("7")
    return {"config": config, "reports": reports, "started": started,
            "kfp_pushed": kfp_pushed, "config_file": config_file}


def by_run(entries) -> dict[str, history.HistoryEntry]:
    return {entry.run_id: entry for entry in entries}


def test_every_run_newest_first_with_its_verdict_and_push(site):
    entries = history.history(site["config"])
    assert [e.run_id for e in entries] == ["kfp-run-7", "run-5", "run-4", "run-3", "run-2",
                                           "run-1"]
    assert [e.source for e in entries] == ["manifest"] + ["metadata"] * 5
    assert [e.pushed_version for e in entries] == [3, None, 2, None, None, 1]
    assert [e.blessed for e in entries] == [None, None, True, None, False, True]
    assert [e.spans for e in entries] == ["", "3", "2", "2", "1-2", "1"]
    assert [e.time for e in entries[1:]] == [
        iso_ms(site["started"][run]) for run in ("run-5", "run-4", "run-3", "run-2", "run-1")]
    runs = by_run(entries)
    assert runs["run-4"].verdict == "every threshold holds"
    assert runs["run-4"].metrics == {"BinaryAccuracy": 0.86, "AUC": 0.91}
    assert runs["run-2"].verdict == REFUSAL
    assert runs["run-3"].failed == "Transform: column 'fare' holds text in 3 of 20 rows"
    assert runs["run-3"].verdict == "" and runs["run-3"].metrics == {}
    assert runs["kfp-run-7"].model_uri == KFP_MODEL


def test_a_run_without_a_record_is_told_from_the_metadata_store(site):
    run = by_run(history.history(site["config"]))["run-5"]
    assert run.spans == "3"  # the span property of what its CsvExampleGen wrote
    assert run.components["CsvExampleGen"] == "done"
    assert run.components["Trainer"] == "failed"
    assert run.components["Pusher"] == "not run"
    assert "ImportSchemaGen" not in run.components  # no curated schema in this config
    assert run.failed == "Trainer: see its log"
    assert run.pushed_version is None and run.metrics == {}


def test_each_run_is_one_whole_line(site):
    entries = history.history(site["config"])
    runs = by_run(entries)
    started = {run: iso_ms(ms)[:19].replace("T", " ") for run, ms in site["started"].items()}
    assert runs["run-1"].line() == (f"{started['run-1']}  run run-1  span 1  4 done  "
                                    "BinaryAccuracy 0.8500 AUC 0.9000  blessed  "
                                    "pushed version 1")
    assert runs["run-2"].line() == (f"{started['run-2']}  run run-2  span 1-2  4 done  "
                                    "BinaryAccuracy 0.8500 AUC 0.9000  "
                                    f"not blessed: {REFUSAL}")
    assert runs["run-3"].line() == (f"{started['run-3']}  run run-3  span 2  "
                                    "1 done, 1 failed, 2 not run  failed at Transform: "
                                    "column 'fare' holds text in 3 of 20 rows")
    assert runs["run-5"].line() == (f"{started['run-5']}  run run-5  span 3  "
                                    "1 done, 1 failed, 8 not run  "
                                    "failed at Trainer: see its log")
    kfp_time = site["kfp_pushed"][:19].replace("T", " ")
    assert entries[0].line() == (f"{kfp_time}  run kfp-run-7  pushed version 3  "
                                 f"(from the push manifest only; model {KFP_MODEL})")
    assert all("\n" not in entry.line() for entry in entries)


def test_the_json_form_holds_every_field(site):
    entries = history.history(site["config"])
    refused = by_run(entries)["run-2"]
    assert refused.to_json() == {
        "run_id": "run-2", "time": iso_ms(site["started"]["run-2"]), "source": "metadata",
        "spans": "1-2",
        "components": {"CsvExampleGen": "done", "Trainer": "done", "Evaluator": "done",
                       "Pusher": "done"},
        "failed": None, "metrics": {"BinaryAccuracy": 0.85, "AUC": 0.9}, "blessed": False,
        "verdict": REFUSAL, "pushed_version": None, "not_pushed_reason": "model not blessed",
        "model_uri": site["reports"]["run-2"].model_uri, "rollout": ""}
    documents = json.loads(json.dumps([entry.to_json() for entry in entries]))
    assert [d["pushed_version"] for d in documents] == [3, None, 2, None, None, 1]
    assert documents[0]["source"] == "manifest" and documents[0]["run_id"] == "kfp-run-7"


def test_limit_keeps_the_newest(site):
    config = site["config"]
    assert [e.run_id for e in history.history(config, limit=2)] == ["kfp-run-7", "run-5"]
    assert [e.run_id for e in history.history(config, limit=1)] == ["kfp-run-7"]
    assert len(history.history(config, limit=50)) == 6
    assert len(history.history(config, limit=None)) == 6


def test_without_a_metadata_store_only_the_push_manifests_are_left(site):
    """As after `rm build/metadata.sqlite` (or on a machine that ran nothing): records are
    not runs by themselves; every pushed version is still listed, from its manifest."""
    config = site["config"]
    os.remove(config.pipeline.metadata_path)
    assert history.metadata_connection(config) is None
    entries = history.history(config)
    assert [(e.pushed_version, e.source, e.run_id) for e in entries] == [
        (3, "manifest", "kfp-run-7"), (2, "manifest", ""), (1, "manifest", "run-1")]
    assert entries[1].model_uri == site["reports"]["run-4"].model_uri
    assert entries[1].line().split("  ")[1:] == [
        "run (unknown)", "pushed version 2",
        f"(from the push manifest only; model {site['reports']['run-4'].model_uri})"]
    assert all(e.blessed is None and not e.components for e in entries)


def test_an_empty_workspace_has_no_history(config_file: Path):
    config = load_config(config_file)
    assert not os.path.exists(config.serving_model_dir)
    assert history.history(config) == []


def test_a_run_that_changed_nothing_says_why_it_pushed_nothing(config_file: Path):
    config = load_config(config_file)
    record(config, "run-again", 1, components=done("CsvExampleGen", "Trainer", "Evaluator",
                                                  "Pusher", state="cached"),
           metrics=checks(0.85, 0.9), blessed=True,
           not_pushed_reason="nothing changed since the last run (all cached)")
    started = TfxStore(config.pipeline.metadata_path).add_run(PIPELINE, "run-again")
    [entry] = history.history(config)
    assert entry.line() == (f"{iso_ms(started)[:19].replace('T', ' ')}  run run-again  "
                            "span 1  4 cached  BinaryAccuracy 0.8500 AUC 0.9000  blessed  "
                            "not pushed: nothing changed since the last run (all cached)")


def test_each_pushed_version_shows_how_its_rollout_went(site):
    """Version 2 (run-4's) aborted on divergence; version 3 (the Kubeflow push, known
    from its manifest only) still rolling out against version 1, at the 25 % its last step
    set; version 1, the first push, went live as pushed: no rollout."""
    config = site["config"]
    write_decisions(config, *aborted(2, champion=1), start(3, 1, at(10)),
                    state=RolloutState("chicago-taxi", PROGRESSING, champion=1, candidate=3,
                                       step=1, weight=25.0, intervals=1, decided=[2]))
    runs = by_run(history.history(config))
    assert runs["run-4"].rollout == "aborted 2026-03-02 12:04 (divergence)"
    assert runs["kfp-run-7"].rollout == "in progress 25 %"
    assert runs["run-1"].rollout == "" and runs["run-2"].rollout == ""
    assert runs["run-4"].line().endswith(
        "pushed version 2  rollout aborted 2026-03-02 12:04 (divergence)")
    assert "pushed version 3  rollout in progress 25 %  (from the push manifest only" in \
        runs["kfp-run-7"].line()
    assert runs["run-1"].line().endswith("pushed version 1")

    listed = mlops_in_process("history", "--json", "--config", str(site["config_file"]))
    assert listed.returncode == 0, listed.stderr
    assert [(d["pushed_version"], d["rollout"]) for d in json.loads(listed.stdout)] == [
        (3, "in progress 25 %"), (None, ""), (2, "aborted 2026-03-02 12:04 (divergence)"),
        (None, ""), (None, ""), (1, "")]
