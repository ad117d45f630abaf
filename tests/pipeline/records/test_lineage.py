"""`mlops lineage VERSION` on made-up push manifests and run records (no pipeline run:
tests/e2e/story/test_history.py follows real runs' versions).

A version's story starts at its push manifest in the serving directory and continues in
its run's record (or, failing that, the local metadata store): the data span, statistics,
schema, model, evaluation, verdict and baseline. Where neither knows the run, the answer
must say that only the manifest is known, and a version that is not there must name the
ones that are. After the push, the version's rollout as the server's decisions tell it
(made up here: `rollout_records`), in the text and in the JSON, with or without the run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.definition.config import PipelineConfig, Threshold, load_config
from pipeline.errors import UserError
from pipeline.records import lineage, store
from pipeline.records.summary import ComponentStatus, MetricCheck, RunReport
from serving import versions
from tests.conftest import mlops_in_process
from tests.pipeline.records.rollout_records import aborted, promoted, write_decisions
from tests.pipeline.records.tfx_metadata import State, TfxStore

PIPELINE = "chicago-taxi"
PUSHED_AT = "2026-03-02T04:05:06.123456+00:00"


def uri(config: PipelineConfig, component: str, number: int) -> str:
    return os.path.join(config.pipeline.root, component, "out", str(number))


def pushed_run(config: PipelineConfig, run_id: str, version: int, **fields) -> RunReport:
    """The record of a run that pushed `version`, saved as a run saves it."""
    accuracy = Threshold(metric="BinaryAccuracy", lower_bound=0.8, max_regression=0.01)
    auc = Threshold(metric="AUC", lower_bound=0.8, max_regression=0.01)
    values = dict(
        components=[ComponentStatus(n, "done", 2.0) for n in ("CsvExampleGen", "Pusher")],
        span=4, train_spans=2, examples_uri=uri(config, "CsvExampleGen", 31),
        statistics_uri=uri(config, "StatisticsGen", 32),
        schema_uri=uri(config, "SchemaGen", 3), anomalies_uri=uri(config, "ExampleValidator", 34),
        model_uri=uri(config, "Trainer", 36), evaluation_uri=uri(config, "Evaluator", 38),
        metrics=[MetricCheck("BinaryAccuracy", 0.8712, 0.004, accuracy, []),
                 MetricCheck("AUC", 0.9034, None, auc, [])],
        evaluated=True, blessed=True, baseline_compared=True, baseline_version=version - 1,
        pushed_version=str(version),
        pushed_path=os.path.join(config.serving_model_dir, str(version)))
    report = RunReport(PIPELINE, run_id, **{**values, **fields})
    store.save(config, report)
    return report


def push(config: PipelineConfig, version: int, model_uri: str, run_id: str) -> str:
    """Version `version`'s folder with the manifest the Pusher writes into it."""
    folder = os.path.join(config.serving_model_dir, str(version))
    manifest = Path(folder, versions.MANIFEST_PATH)
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"model_uri": model_uri, "model_id": 36,
                                    "pushed_at": PUSHED_AT, "pipeline_run": run_id,
                                    "version": version}, indent=2))
    Path(folder, "saved_model.pb").write_bytes(b"")
    return folder


@pytest.fixture
def config(config_file: Path) -> PipelineConfig:
    return load_config(config_file)


def test_a_version_leads_to_its_run_data_model_evaluation_and_baseline(config):
    run = pushed_run(config, "2026-03-02T04:00:00.5", 2)
    folder = push(config, 2, run.model_uri, run.run_id)
    found = lineage.lineage(config, 2)
    assert (found.version, found.path, found.pushed_at) == (2, folder, PUSHED_AT)
    assert (found.run_id, found.model_uri, found.note) == (run.run_id, run.model_uri, "")
    assert found.run == run
    assert found.lines() == [
        f"version 2: {folder}",
        f"  pushed at {PUSHED_AT} from model {run.model_uri}",
        f"  run {run.run_id}",
        f"  data: span 3-4, examples {run.examples_uri}",
        f"  statistics {run.statistics_uri}",
        f"  schema {run.schema_uri}, anomalies {run.anomalies_uri}",
        f"  trained model {run.model_uri}",
        f"  evaluation {run.evaluation_uri}: BinaryAccuracy 0.8712, AUC 0.9034",
        "  blessed; compared with served version 1",
    ]


def test_the_json_form_carries_the_whole_record(config):
    run = pushed_run(config, "run-a", 1, baseline_compared=False, baseline_version=None)
    push(config, 1, run.model_uri, run.run_id)
    document = json.loads(json.dumps(lineage.lineage(config, 1).to_json()))
    assert {key: document[key] for key in ("version", "pushed_at", "model_uri", "run_id",
                                           "note")} == {
        "version": 1, "pushed_at": PUSHED_AT, "model_uri": run.model_uri, "run_id": "run-a",
        "note": ""}
    assert document["path"] == os.path.join(config.serving_model_dir, "1")
    assert document["run"]["span"] == 4 and document["run"]["baseline_version"] is None
    assert store.from_dict(document["run"]) == run  # the record, whole
    assert document["rollout"] is None  # no rollout recorded
    assert lineage.lineage(config, 1).lines()[-1] == \
        "  blessed; no served version to compare with"


def test_a_manifest_without_a_run_id_is_matched_by_its_model(config):
    """Manifests written before runs named themselves: the record that pushed this model
    as this version is the run (another run with the same model did not push it)."""
    pushed_run(config, "run-a", 3, pushed_version=None, not_pushed_reason="model already "
               "serving as version 3")  # read first: records load in name order
    run = pushed_run(config, "run-b", 3)
    push(config, 3, run.model_uri, "")
    found = lineage.lineage(config, 3)
    assert found.run == run and found.run_id == "run-b"
    assert "  run run-b" in found.lines()


def test_a_version_that_is_not_there_names_those_that_are(config):
    with pytest.raises(lineage.LineageError) as missing:
        lineage.lineage(config, 1)
    assert str(missing.value) == (f"version 1 is not in {config.serving_model_dir} "
                                  "(versions there: none)")
    for version in (1, 2, 10):
        push(config, version, f"/models/{version}", f"run-{version}")
    os.makedirs(os.path.join(config.serving_model_dir, ".staging-1767225600-0a1b2c3d"))
    with pytest.raises(lineage.LineageError) as missing:
        lineage.lineage(config, 9)
    assert str(missing.value) == (f"version 9 is not in {config.serving_model_dir} "
                                  "(versions there: 1, 2, 10)")
    assert isinstance(missing.value, UserError) and missing.value.exit_code == 1


def test_a_version_whose_record_is_gone_is_known_from_its_manifest_only(config):
    run = pushed_run(config, "run-gone", 1)
    folder = push(config, 1, run.model_uri, run.run_id)
    os.remove(store.record_path(config, run.run_id))
    found = lineage.lineage(config, 1)
    assert found.run is None
    assert (found.run_id, found.model_uri, found.pushed_at) == ("run-gone", run.model_uri,
                                                                 PUSHED_AT)
    assert found.note.endswith("only the push manifest is known")
    assert found.lines() == [f"version 1: {folder}",
                             f"  pushed at {PUSHED_AT} from model {run.model_uri}",
                             "  run run-gone", f"  {found.note}"]
    assert found.to_json()["run"] is None


def test_without_a_record_the_metadata_store_tells_the_run(config):
    """A run that crashed after its push, before writing its record: what the local
    store knows (the span and examples from CsvExampleGen, the model from the Trainer)."""
    model = uri(config, "Trainer", 40)
    metadata = TfxStore(config.pipeline.metadata_path)
    metadata.add_run(PIPELINE, "run-crashed")
    metadata.add_execution(PIPELINE, "run-crashed", "CsvExampleGen", State.COMPLETE,
                           examples=(uri(config, "CsvExampleGen", 39), 5))
    metadata.add_execution(PIPELINE, "run-crashed", "Trainer", State.COMPLETE,
                           model_uri=model)
    push(config, 1, model, "run-crashed")
    push(config, 2, uri(config, "Trainer", 50), "run-elsewhere")  # not in the store
    found = lineage.lineage(config, 1)
    assert found.run is not None and found.run.run_id == "run-crashed"
    assert (found.run.span, found.run.model_uri) == (5, model)
    assert found.run.examples_uri == uri(config, "CsvExampleGen", 39)
    assert found.run.blessed is None and found.note == ""
    text = found.lines()
    assert f"  data: span 5, examples {uri(config, 'CsvExampleGen', 39)}" in text
    assert "  no verdict; no served version to compare with" in text
    elsewhere = lineage.lineage(config, 2)
    assert elsewhere.run is None and elsewhere.run_id == "run-elsewhere"
    assert "only the push manifest is known" in elsewhere.note


def test_a_version_without_a_manifest_was_not_pushed_by_this_pipeline(config):
    folder = os.path.join(config.serving_model_dir, "4")
    os.makedirs(folder)
    found = lineage.lineage(config, 4)
    assert (found.run, found.run_id, found.model_uri, found.pushed_at) == (None, "", "", "")
    assert found.note == "the version has no push manifest: it was not pushed by this pipeline"
    assert found.lines()[-1] == f"  {found.note}"
    assert found.lines()[:3] == [f"version 4: {folder}", "  pushed at unknown from model ",
                                 "  run (not recorded)"]


def test_a_promoted_version_tells_its_rollout_after_its_run(config):
    run = pushed_run(config, "run-b", 2)
    push(config, 2, run.model_uri, run.run_id)
    write_decisions(config, *promoted(2, champion=1))
    found = lineage.lineage(config, 2)
    assert found.rollout.outcome == "promoted"
    assert found.lines()[-3:] == [
        "  blessed; compared with served version 1",
        "  rollout against version 1: promoted 2026-03-02 12:05:01 UTC by checks after 5 "
        "intervals, last weight 50 %",
        "    passed every step: version 2 serves alone"]
    document = json.loads(json.dumps(found.to_json()))
    assert {key: document["rollout"][key] for key in ("outcome", "ended_at", "by",
                                                      "failed_checks", "weight")} == {
        "outcome": "promoted", "ended_at": "2026-03-02T12:05:01+00:00", "by": "checks",
        "failed_checks": [], "weight": 50.0}
    assert len(document["rollout"]["intervals"]) == 5


def test_an_aborted_version_known_from_its_manifest_only_still_tells_its_rollout(config):
    """A Kubeflow run's push: no record or metadata here, but the serving directory has
    the rollout, and the failed checks it was aborted on."""
    push(config, 3, "gs://bucket/Trainer/model/9", "kfp-run-3")
    write_decisions(config, *aborted(3, champion=2))
    found = lineage.lineage(config, 3)
    assert found.run is None
    assert found.lines()[3:] == [
        "  rollout against version 2: aborted 2026-03-02 12:04:01 UTC by checks on "
        "divergence after 4 intervals, last weight 25 %",
        "    failed divergence in 2 intervals",
        f"  {found.note}"]
    assert found.to_json()["rollout"]["failed_checks"] == ["divergence"]


def test_mlops_lineage_prints_the_rollout_as_text_and_json(config, config_file: Path):
    run = pushed_run(config, "run-b", 2)
    push(config, 2, run.model_uri, run.run_id)
    write_decisions(config, *aborted(2, champion=1))
    text = mlops_in_process("lineage", "2", "--config", str(config_file))
    assert text.returncode == 0, text.stderr
    assert "  rollout against version 1: aborted 2026-03-02 12:04:01 UTC by checks on " \
           "divergence after 4 intervals, last weight 25 %\n" in text.stdout
    as_json = mlops_in_process("lineage", "2", "--json", "--config", str(config_file))
    rollout = json.loads(as_json.stdout)["rollout"]
    assert (rollout["outcome"], rollout["by"], rollout["failed_checks"]) == (
        "aborted", "checks", ["divergence"])
    assert [i["verdict"] for i in rollout["intervals"]] == ["pass", "fail", "pass", "fail"]
