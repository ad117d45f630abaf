"""Pusher executor that publishes blessed models as whole, increasing integer versions.

TFX's stock filesystem Pusher names versions by Unix time and copies files straight into
the watched folder, so a model server polling it can see a half-written version. This
executor keeps TFX's blessing check and its metadata, and changes how the copy lands:

- the next version is one above every version the folder has held (a record survives
  rollbacks that move or delete versions), so versions only increase;
- the model is written to a hidden staging folder beside the versions, then renamed into
  place: TF Serving ignores names that are not integers, and a rename is atomic on a
  local or POSIX file system, so a version appears complete or not at all;
- a model that is already the newest version is not pushed again (an unchanged re-run);
- two pushes at once (a scheduled run overlapping a manual one) both land: a push whose
  version number was taken meanwhile takes the next one, and a push removes only staging
  folders old enough to have been abandoned (their name carries their start time).

Each version carries `assets.extra/push_manifest.json` (source model, time, run): TF
Serving ignores extra assets, and operators can tell what a version is.
"""
from __future__ import annotations

import datetime
import json
import os
import time
import uuid
from typing import Any, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

MANIFEST_PATH = os.path.join("assets.extra", "push_manifest.json")
STAGING_PREFIX = ".staging-"
VERSION_RECORD = ".last_version"
SKIPPED_REASON_KEY = "skipped_reason"
ABANDONED_STAGING_S = 6 * 3600  # no copy of a model takes this long; a killed push's does
PUBLISH_ATTEMPTS = 20


def existing_versions(base_directory: str) -> list[int]:
    """Integer version folders under `base_directory`, ascending (others are ignored)."""
    if not fileio.exists(base_directory):
        return []
    names = (name.rstrip("/") for name in fileio.listdir(base_directory))
    return sorted(int(name) for name in names if name.isdigit() and int(name) > 0)


def next_version(base_directory: str) -> int:
    record = os.path.join(base_directory, VERSION_RECORD)
    recorded = int(io_utils.read_string_file(record).strip() or 0) if fileio.exists(record) else 0
    return max([recorded, *existing_versions(base_directory)]) + 1


def read_manifest(version_dir: str) -> Optional[dict[str, Any]]:
    path = os.path.join(version_dir, MANIFEST_PATH)
    if not fileio.exists(path):
        return None
    try:
        return json.loads(io_utils.read_string_file(path))
    except ValueError:
        return None


def publish_model(model_path: str, base_directory: str, manifest: dict[str, Any]) -> tuple[int, str]:
    """Copies `model_path` in as the next version; returns (version, path).

    On any failure the staging folder is removed and no version folder is created.
    """
    fileio.makedirs(base_directory)
    remove_abandoned_staging(base_directory)
    staging = os.path.join(base_directory,
                           f"{STAGING_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:8]}")
    try:
        io_utils.copy_dir(model_path, staging)
        version, final = _rename_into_next_version(staging, base_directory, manifest)
    except BaseException:
        if fileio.exists(staging):
            io_utils.delete_dir(staging)
        raise
    _record_version(base_directory, version)
    return version, final


def _rename_into_next_version(staging: str, base_directory: str,
                              manifest: dict[str, Any]) -> tuple[int, str]:
    """Renames `staging` to the next free version; a number taken meanwhile is skipped.

    The rename does not replace an existing version (TFX's file systems refuse to, and
    POSIX cannot rename onto a non-empty folder), so the loser of a race tries again.
    """
    for _ in range(PUBLISH_ATTEMPTS):
        version = next_version(base_directory)
        final = os.path.join(base_directory, str(version))
        io_utils.write_string_file(os.path.join(staging, MANIFEST_PATH),
                                   json.dumps({**manifest, "version": version}, indent=2))
        try:
            fileio.rename(staging, final)
            return version, final
        except Exception:  # pylint: disable=broad-except  # each file system its own error
            if not fileio.exists(final):
                raise
            logging.info("Version %s was pushed meanwhile by another run; trying the next.",
                         version)
    raise RuntimeError(f"no free version number in {base_directory} after "
                       f"{PUBLISH_ATTEMPTS} attempts")


def _record_version(base_directory: str, version: int) -> None:
    """Records `version` unless a concurrent push already recorded a higher one."""
    record = os.path.join(base_directory, VERSION_RECORD)
    recorded = int(io_utils.read_string_file(record).strip() or 0) if fileio.exists(record) else 0
    if version > recorded:
        io_utils.write_string_file(record, str(version))


def remove_abandoned_staging(base_directory: str, now: Optional[float] = None) -> list[str]:
    """Removes staging folders left by killed pushes; a push in progress elsewhere is kept.

    A staging name is `.staging-<start time>-<random>`; a name without a readable time
    (written by an older version of this pusher) counts as abandoned.
    """
    now = time.time() if now is None else now
    removed = []
    for name in (entry.rstrip("/") for entry in fileio.listdir(base_directory)):
        if not name.startswith(STAGING_PREFIX):
            continue
        started = name[len(STAGING_PREFIX):].split("-", 1)[0]
        if started.isdigit() and now - int(started) < ABANDONED_STAGING_S:
            continue
        io_utils.delete_dir(os.path.join(base_directory, name))
        removed.append(name)
    return removed


class Executor(pusher_executor.Executor):
    """Drop-in executor for `tfx.components.Pusher` with a filesystem destination."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property(SKIPPED_REASON_KEY, "model not blessed")
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("the versioned pusher needs a filesystem push_destination")
        base_directory = destination.filesystem.base_directory

        model = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.MODEL_KEY])
        versions = existing_versions(base_directory)
        if versions:
            latest = read_manifest(os.path.join(base_directory, str(versions[-1]))) or {}
            if latest.get("model_uri") == model.uri:
                self._MarkNotPushed(model_push)
                model_push.set_string_custom_property(
                    SKIPPED_REASON_KEY, f"model already serving as version {versions[-1]}")
                logging.info("Model %s is already version %s; not pushing again.",
                             model.uri, versions[-1])
                return

        manifest = {
            "model_uri": model.uri,
            "model_id": model.id,
            "pushed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "pipeline_run": (self._context and self._context.pipeline_run_id) or "",
        }
        version, path = publish_model(self.GetModelPath(input_dict), base_directory, manifest)
        self._MarkPushed(model_push, pushed_destination=path, pushed_version=str(version))
        logging.info("Model pushed as version %s at %s.", version, path)
