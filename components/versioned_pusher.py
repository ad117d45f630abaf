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

A base directory on an object store (any URI scheme but `file`: `gs://`, `s3://`, ...) has
no atomic rename and no real directories, so it is published differently; see
`publish_to_object_store`.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import time
import uuid
from typing import Any, Iterable, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from serving import versions

MANIFEST_PATH = versions.MANIFEST_PATH
STAGING_PREFIX = ".staging-"
VERSION_RECORD = versions.VERSION_RECORD
SKIPPED_REASON_KEY = "skipped_reason"
ABANDONED_STAGING_S = 6 * 3600  # no copy of a model takes this long; a killed push's does
PUBLISH_ATTEMPTS = 20
# The files TensorFlow reads a SavedModel's graph from (`tf.saved_model` constants
# SAVED_MODEL_FILENAME_PB / _PBTXT / _CPB, the last a chunked graph over 2 GB); without
# one, a load fails with "Could not find SavedModel .pb or .pbtxt"
# (tensorflow/cc/saved_model/reader.cc, ReadSavedModel).
GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt", "saved_model.cpb")
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def existing_versions(base_directory: str) -> list[int]:
    """Integer version folders under `base_directory`, ascending (others are ignored)."""
    if not fileio.exists(base_directory):
        return []
    return versions.version_numbers(fileio.listdir(base_directory))


def next_version(base_directory: str) -> int:
    return max([_recorded_version(base_directory), *existing_versions(base_directory)]) + 1


def _recorded_version(base_directory: str) -> int:
    record = os.path.join(base_directory, VERSION_RECORD)
    if not fileio.exists(record):
        return 0
    return versions.parse_version_record(io_utils.read_string_file(record))


def read_manifest(version_dir: str) -> Optional[dict[str, Any]]:
    path = os.path.join(version_dir, MANIFEST_PATH)
    if not fileio.exists(path):
        return None
    return versions.parse_manifest(io_utils.read_string_file(path))


def publish_model(model_path: str, base_directory: str,
                  manifest: dict[str, Any]) -> tuple[int, str]:
    """Copies `model_path` in as the next version; returns (version, path).

    On any failure the staging folder is removed and no version folder is created. A base
    directory on an object store is published by `publish_to_object_store` instead.

    Raises:
        RuntimeError: every one of `PUBLISH_ATTEMPTS` version numbers was taken meanwhile
            by concurrent pushes.
        ValueError: (object store) `model_path` holds no SavedModel graph.
        Exception: the file system's own error for a failed copy or rename, after the
            staging folder is removed.
    """
    if is_object_store(base_directory):
        return publish_to_object_store(model_path, base_directory, manifest)
    fileio.makedirs(base_directory)
    remove_abandoned_staging(base_directory)
    staging = _new_staging_path(base_directory)
    try:
        io_utils.copy_dir(model_path, staging)
        version, final = _rename_into_next_version(staging, base_directory, manifest)
    except BaseException:
        if fileio.exists(staging):
            io_utils.delete_dir(staging)
        raise
    _record_version(base_directory, version)
    return version, final


def _new_staging_path(base_directory: str) -> str:
    """A fresh staging folder name beside the versions: not an integer, so TF Serving
    ignores it; its start time lets `remove_abandoned_staging` tell a killed push's."""
    return os.path.join(base_directory,
                        f"{STAGING_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:8]}")


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
    if version > _recorded_version(base_directory):
        _write_string(os.path.join(base_directory, VERSION_RECORD), str(version))


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


def uri_scheme(path: str) -> str:
    """The URI scheme of `path`, lower case; "" for a plain local path."""
    match = _URI_SCHEME.match(path)
    return match.group(1).lower() if match else ""


def is_object_store(path: str) -> bool:
    """Whether `path` is published by copying (any URI scheme but `file`) or by renaming.

    Decided by scheme, not by probing the store: `gs://` and `s3://` have no atomic rename
    and no real folders. A scheme whose rename is atomic after all (`hdfs://`) loses
    nothing by taking the copy path, which relies only on each file's own write.
    """
    return uri_scheme(path) not in ("", "file")


def is_graph_file(relative_path: str) -> bool:
    """Whether `relative_path` (inside a SavedModel) is the graph TensorFlow loads it by."""
    return relative_path in GRAPH_FILES


def has_graph(version_dir: str) -> bool:
    """Whether a version folder holds its graph: a whole version, loadable. (A push to an
    object store killed part way leaves a folder without one, manifest and all.)"""
    return any(fileio.exists(os.path.join(version_dir, name)) for name in GRAPH_FILES)


def upload_order(relative_paths: Iterable[str]) -> list[str]:
    """The order to write a SavedModel's files into a version a server may be polling:
    every other file first, the graph last (so a load before the end fails, see
    `publish_to_object_store`)."""
    return sorted(relative_paths, key=lambda path: (is_graph_file(path), path))


def publish_to_object_store(model_path: str, base_directory: str,
                            manifest: dict[str, Any]) -> tuple[int, str]:
    """Copies `model_path` in as the next version of a base directory on an object store.

    Why not stage and rename as on a local disk: on a bucket a "rename" copies each object
    and deletes the original, and a "folder" exists as soon as one object has its prefix.
    TF Serving's FileSystemStoragePathSource lists the base path every poll, takes the
    first name component of every object below it (on GCS GetChildren returns all
    descendants) and aspires each integer name (tensorflow/serving,
    sources/storage_path/file_system_storage_path_source.cc, PollFileSystemForServable),
    so `<N>/` is a version to load as soon as its first object lands. A graph that lands
    before the variables loads "successfully" and then fails requests
    (tensorflow/serving#1086 on GCS; tensorflow/tensorflow#20635 on HDFS).

    So, as the workaround named in tensorflow/serving#1086: stage beside the versions (a
    non-integer name the server ignores), then copy into `<N>/` file by file with the
    graph (`GRAPH_FILES`) last. Until the graph lands a load fails with "Could not find
    SavedModel .pb or .pbtxt" (tensorflow/cc/saved_model/reader.cc), the server's
    LoaderHarness retries it `--max_num_load_retries` times (default 5), every
    `--load_retry_interval_micros` (default 1 minute) (core/loader_harness.cc, flags in
    model_servers/main.cc), and meanwhile the previous version keeps serving: the
    AvailabilityPreservingPolicy that model_servers/server.cc installs unloads an old
    version only once an aspired one is ready (core/availability_preserving_policy.cc).
    The copy must finish within that retry budget (5 minutes by default; a copy inside
    a bucket takes seconds): a version whose retries ran out stays in error while it
    is aspired (core/aspired_versions_manager.cc re-adds only versions not already
    aspired), until a newer version or a server restart.

    No directory-marker objects: files are written by path (never `makedirs`), because
    TensorFlow's GCS CreateDir writes a zero-byte object `dir/` (tsl/platform/cloud/
    gcs_file_system.cc), and such markers break downloads of directory-shaped artifacts
    such as a SavedModel (kubeflow/pipelines#13476: the marker is fetched as a file where
    the folder should be).

    Concurrency: a bucket has no atomic "create if absent", so pushes to one base
    directory must be serialized; the Kubeflow schedule runs one run at a time
    (`schedule.max_concurrency: 1` in pipeline_config.yaml). What is cheap to detect is
    detected: a version number whose folder already holds objects (its graph, or a
    push in progress or killed) is skipped for the next one.

    A push killed part way (no exception to clean up after) leaves `<N>/` without its
    graph: never loadable, the previous version keeps serving, and the next push takes
    N+1, never N again (the server would not retry a version it holds in error).

    Raises:
        ValueError: `model_path` holds no SavedModel graph file.
        RuntimeError: every one of `PUBLISH_ATTEMPTS` version numbers already holds
            objects.
        Exception: the file system's own error for a failed copy, after the staging
            folder and the partial version are removed.
    """
    sources = _relative_files(model_path)
    if not any(is_graph_file(path) for path in sources):
        raise ValueError(f"{model_path} is not a SavedModel: none of {GRAPH_FILES} in it")
    if fileio.exists(base_directory):
        remove_abandoned_staging(base_directory)
    staging = _new_staging_path(base_directory)
    try:
        _copy_files(model_path, staging, sources)
        version, final = _copy_into_next_version(staging, base_directory, manifest)
    finally:
        if fileio.exists(staging):
            io_utils.delete_dir(staging)
    _record_version(base_directory, version)
    return version, final


def _copy_into_next_version(staging: str, base_directory: str,
                            manifest: dict[str, Any]) -> tuple[int, str]:
    """Copies `staging` (with its manifest) into the next free version, the graph last.

    A copy that fails part way leaves no folder behind: without its graph the version
    was never loadable, so removing it hides nothing from the server.
    """
    version = 0
    for _ in range(PUBLISH_ATTEMPTS):
        version = max(next_version(base_directory), version + 1)
        final = os.path.join(base_directory, str(version))
        if _version_taken(final):
            logging.info("Version %s already holds objects (another push); trying the next.",
                         version)
            continue
        _write_string(os.path.join(staging, MANIFEST_PATH),
                      json.dumps({**manifest, "version": version}, indent=2))
        try:
            _copy_files(staging, final, upload_order(_relative_files(staging)))
        except BaseException:
            _remove_unloadable_version(final)
            raise
        return version, final
    raise RuntimeError(f"no free version number in {base_directory} after "
                       f"{PUBLISH_ATTEMPTS} attempts")


def _version_taken(version_dir: str) -> bool:
    """Whether a version folder is in use: its graph is there (a whole version), or any
    object is (on an object store a folder exists exactly when an object has its prefix)."""
    return has_graph(version_dir) or fileio.exists(version_dir)


def _remove_unloadable_version(version_dir: str) -> None:
    """Removes what a failed copy left in `version_dir`, unless its graph is there (then
    it is loadable, hence not a leftover of this copy). Never masks the copy's error."""
    try:
        if not has_graph(version_dir):
            io_utils.delete_dir(version_dir)
    except Exception:  # pylint: disable=broad-except
        logging.warning("Could not remove the partial version %s.", version_dir,
                        exc_info=True)


def _relative_files(root: str) -> list[str]:
    """Every file under `root`, as '/'-joined paths relative to it, sorted.

    Folders are not listed: an object store has none, so an empty one (a SavedModel's
    `assets/`) is not carried over; TensorFlow does not need it.
    """
    prefix = root.rstrip("/") + "/"
    found = []
    for dir_name, _subdirs, names in fileio.walk(root):
        for name in names:
            path = os.path.join(dir_name, name)
            if not path.startswith(prefix):
                raise ValueError(f"{path} listed under {root} is not below it")
            found.append(path[len(prefix):])
    return sorted(found)


def _copy_files(source_root: str, destination_root: str,
                relative_paths: Iterable[str]) -> None:
    """Copies each file to the same relative path, in the given order, by path alone:
    no `makedirs`, hence no directory-marker objects (see `publish_to_object_store`)."""
    for relative in relative_paths:
        fileio.copy(os.path.join(source_root, relative),
                    os.path.join(destination_root, relative), overwrite=True)


def _write_string(path: str, text: str) -> None:
    """Writes `text` to `path`. On an object store by path alone: io_utils'
    write_string_file calls makedirs first, which leaves a marker object there."""
    if is_object_store(path):
        with fileio.open(path, "w") as handle:
            handle.write(text)
    else:
        io_utils.write_string_file(path, text)


class Executor(pusher_executor.Executor):
    """Drop-in executor for `tfx.components.Pusher` with a filesystem destination."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        """Publishes a blessed model as the next version, unless the newest version is
        this model already; a skip is recorded on the PushedModel with its reason.

        Raises:
            ValueError: the push destination is not a filesystem one, or (object store)
                the model holds no SavedModel graph.
            RuntimeError: as `publish_model`: no free version number.
        """
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
            latest_dir = os.path.join(base_directory, str(versions[-1]))
            latest = (read_manifest(latest_dir) or {}) if has_graph(latest_dir) else {}
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
