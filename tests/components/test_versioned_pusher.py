"""The versioned pusher: whole versions, always increasing, nothing partial after a crash."""
from __future__ import annotations

import concurrent.futures
import json
import os
import time
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from components import versioned_pusher


def children(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_versions_start_at_1_and_increase(saved_model: Path, tmp_path: Path):
    base = tmp_path / "serving"
    first = versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base), {})
    second = versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base), {})
    assert [first[0], second[0]] == [1, 2]
    assert versioned_pusher.existing_versions(str(base)) == [1, 2]
    assert (base / "2" / "saved_model.pb").exists()
    tf.saved_model.load(str(base / "2"))  # a complete, loadable model


def test_versions_never_go_back_after_the_newest_is_removed(saved_model: Path, tmp_path: Path):
    base = tmp_path / "serving"
    for _ in range(3):
        versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base), {})
    io_utils.delete_dir(str(base / "3"))  # e.g. a rollback that deleted the newest version
    version, _ = versioned_pusher.publish_model(str(saved_model / "Format-Serving"),
                                                str(base), {})
    assert version == 4


def test_non_version_folders_are_ignored(tmp_path: Path):
    for name in ("3", "10", "tmp", "0", ".staging-4-abc"):
        (tmp_path / name).mkdir()
    assert versioned_pusher.existing_versions(str(tmp_path)) == [3, 10]
    assert versioned_pusher.next_version(str(tmp_path)) == 11


def test_crash_during_copy_leaves_no_partial_version(saved_model: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    base = tmp_path / "serving"
    versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base), {})
    real_copy = io_utils.copy_file

    def copy_then_crash(source, destination, overwrite=False):
        real_copy(source, destination, overwrite)
        if destination.endswith("saved_model.pb"):
            raise OSError("disk full")

    monkeypatch.setattr(io_utils, "copy_file", copy_then_crash)
    monkeypatch.setattr(versioned_pusher.io_utils, "copy_dir",
                        _copy_dir_with(copy_then_crash))
    with pytest.raises(OSError, match="disk full"):
        versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base), {})
    assert children(base) == [".last_version", "1"]
    assert versioned_pusher.existing_versions(str(base)) == [1]


def _copy_dir_with(copy_file):
    def copy_dir(source, destination, **_):
        for root, _dirs, files in os.walk(source):
            target = os.path.join(destination, os.path.relpath(root, source))
            os.makedirs(target, exist_ok=True)
            for name in files:
                copy_file(os.path.join(root, name), os.path.join(target, name))
    return copy_dir


def test_staging_left_by_a_killed_push_is_cleaned_up(saved_model: Path, tmp_path: Path):
    base = tmp_path / "serving"
    long_ago = int(time.time()) - versioned_pusher.ABANDONED_STAGING_S - 60
    for name in (f".staging-{long_ago}-deadbeef", ".staging-1-abc", ".staging-old"):
        (base / name / "variables").mkdir(parents=True)
    version, _ = versioned_pusher.publish_model(str(saved_model / "Format-Serving"),
                                                str(base), {})
    assert version == 1
    assert children(base) == [".last_version", "1"]


def test_the_staging_of_a_push_in_progress_elsewhere_is_kept(saved_model: Path,
                                                            tmp_path: Path):
    base = tmp_path / "serving"
    in_progress = base / f".staging-{int(time.time()) - 60}-cafe0123"
    (in_progress / "variables").mkdir(parents=True)
    versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base), {})
    assert in_progress.is_dir()
    assert children(base) == [".last_version", in_progress.name, "1"]


def test_a_version_number_taken_meanwhile_is_skipped(saved_model: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    """Another run renamed its model to the number this push chose: this push must not
    replace it, and lands as the next version."""
    base = tmp_path / "serving"
    versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base),
                                   {"run": "other"})
    real_next_version = versioned_pusher.next_version
    answers = iter([1])  # stale: chosen before the other run's rename

    monkeypatch.setattr(versioned_pusher, "next_version",
                        lambda folder: next(answers, None) or real_next_version(folder))
    version, path = versioned_pusher.publish_model(str(saved_model / "Format-Serving"),
                                                   str(base), {"run": "this"})
    assert (version, path) == (2, str(base / "2"))
    assert versioned_pusher.read_manifest(str(base / "1"))["run"] == "other"
    assert versioned_pusher.read_manifest(str(base / "2")) == {"run": "this", "version": 2}
    assert children(base) == [".last_version", "1", "2"]
    assert (base / ".last_version").read_text() == "2"


def test_concurrent_pushes_all_land_as_distinct_whole_versions(saved_model: Path,
                                                              tmp_path: Path):
    base = tmp_path / "serving"

    def push_three(run: str) -> list[int]:
        return [versioned_pusher.publish_model(str(saved_model / "Format-Serving"), str(base),
                                               {"run": run})[0] for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        pushed = list(pool.map(push_three, ["a", "b", "c"]))
    versions = sorted(v for run in pushed for v in run)
    assert versions == list(range(1, 10))
    assert versioned_pusher.existing_versions(str(base)) == versions
    for run, run_versions in zip("abc", pushed):
        for version in run_versions:
            manifest = versioned_pusher.read_manifest(str(base / str(version)))
            assert manifest == {"run": run, "version": version}
            assert (base / str(version) / "saved_model.pb").exists()
    assert not [name for name in children(base) if name.startswith(".staging-")]


def _executor_inputs(saved_model: Path, tmp_path: Path, blessed: bool):
    model = standard_artifacts.Model()
    model.uri = str(saved_model)
    model.id = 7
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=str(tmp_path / "serving")))
    return ({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
            {"push_destination": proto_utils.proto_to_json(destination)})


def test_executor_pushes_a_blessed_model_once(saved_model: Path, tmp_path: Path):
    inputs, outputs, properties = _executor_inputs(saved_model, tmp_path, blessed=True)
    versioned_pusher.Executor().Do(inputs, outputs, properties)
    pushed = outputs["pushed_model"][0]
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == "1"
    manifest = json.loads((tmp_path / "serving/1/assets.extra/push_manifest.json").read_text())
    assert manifest["model_uri"] == str(saved_model) and manifest["version"] == 1

    inputs, outputs, properties = _executor_inputs(saved_model, tmp_path, blessed=True)
    versioned_pusher.Executor().Do(inputs, outputs, properties)
    again = outputs["pushed_model"][0]
    assert again.get_int_custom_property("pushed") == 0
    assert again.get_string_custom_property("skipped_reason") == (
        "model already serving as version 1")
    assert versioned_pusher.existing_versions(str(tmp_path / "serving")) == [1]


def test_executor_does_not_push_an_unblessed_model(saved_model: Path, tmp_path: Path):
    inputs, outputs, properties = _executor_inputs(saved_model, tmp_path, blessed=False)
    versioned_pusher.Executor().Do(inputs, outputs, properties)
    assert outputs["pushed_model"][0].get_int_custom_property("pushed") == 0
    assert not (tmp_path / "serving").exists()
