"""The unchanged-rerun guard: it answers only when data, config and code are the same."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.definition.config import load_config
from pipeline.local import rerun_guard
from tests.conftest import copy_taxi_span, write_curated_schema


def test_no_record_means_no_match(config_file: Path):
    assert rerun_guard.matching_run(load_config(config_file)) is None


def test_identical_inputs_match_the_recorded_run(config_file: Path):
    rerun_guard.remember(load_config(config_file), "run-1", "summary text")
    record = rerun_guard.matching_run(load_config(config_file))
    assert record["run_id"] == "run-1" and record["summary"] == "summary text"


def test_a_new_span_does_not_match(config_file: Path, workspace: Path):
    rerun_guard.remember(load_config(config_file), "run-1", "")
    copy_taxi_span(2, workspace / "data", rows=20)
    assert rerun_guard.matching_run(load_config(config_file)) is None


def test_a_changed_data_file_does_not_match(config_file: Path, workspace: Path):
    rerun_guard.remember(load_config(config_file), "run-1", "")
    data_file = workspace / "data" / "span-1" / "trips.csv"
    data_file.write_text(data_file.read_text() + "\n")
    assert rerun_guard.matching_run(load_config(config_file)) is None


def test_a_curated_schema_edited_in_place_does_not_match(config_file: Path, workspace: Path):
    with_schema = write_curated_schema(config_file)
    rerun_guard.remember(load_config(config_file, [with_schema]), "run-1", "")
    schema = workspace / "schema.pbtxt"
    schema.write_text(schema.read_text() + 'feature { name: "extra" type: INT }\n')
    assert rerun_guard.matching_run(load_config(config_file, [with_schema])) is None


def test_a_removed_served_version_does_not_match(config_file: Path):
    """Else the replayed summary would name a version that is gone ("Pushed version 1")."""
    config = load_config(config_file)
    version = Path(config.serving_model_dir, "1")
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"model")
    rerun_guard.remember(config, "run-1", "Pushed version 1")
    assert rerun_guard.matching_run(load_config(config_file)) is not None
    (version / "saved_model.pb").unlink()
    version.rmdir()
    assert rerun_guard.matching_run(load_config(config_file)) is None


def test_a_serving_directory_in_a_bucket_is_not_guarded(config_file: Path):
    config = load_config(config_file, ["serving.base_directory=gs://bucket/models"])
    rerun_guard.remember(config, "run-1", "")
    assert rerun_guard.matching_run(config) is None


def test_a_config_override_does_not_match(config_file: Path):
    rerun_guard.remember(load_config(config_file), "run-1", "")
    assert rerun_guard.matching_run(
        load_config(config_file, ["training.train_steps=7"])) is None


def test_caching_off_never_matches(config_file: Path):
    rerun_guard.remember(load_config(config_file), "run-1", "")
    assert rerun_guard.matching_run(
        load_config(config_file, ["pipeline.enable_cache=false"])) is None


def test_forget_removes_the_record(config_file: Path):
    config = load_config(config_file)
    rerun_guard.remember(config, "run-1", "")
    rerun_guard.forget(config)
    assert rerun_guard.matching_run(config) is None


@pytest.mark.parametrize("window,matches", [(1, True), (2, False)])
def test_an_older_span_counts_only_inside_the_training_window(
        config_file: Path, workspace: Path, window: int, matches: bool):
    copy_taxi_span(2, workspace / "data", rows=20)
    pinned = ["data.span=2", f"data.train_spans={window}"]
    rerun_guard.remember(load_config(config_file, pinned), "run-1", "")
    data_file = workspace / "data" / "span-1" / "trips.csv"
    data_file.write_text(data_file.read_text() + "\n")
    found = rerun_guard.matching_run(load_config(config_file, pinned))
    assert (found is not None) is matches
