"""The versioned pusher on an object store (gs://, s3://): no half-written version is ever
loadable by a polling TF Serving, no directory-marker objects, versions still increase.

No bucket exists here, so `objstore://` is served by an emulator with a bucket's published
semantics (see `ObjectStore`), plugged into TFX's file I/O (`tfx.dsl.io.fileio` picks a
plugin by URI scheme) for one test at a time.
"""
from __future__ import annotations

import fnmatch
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Type

import pytest
import tensorflow as tf
from tfx.dsl.io import fileio, filesystem, filesystem_registry
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from components import versioned_pusher

SCHEME = "objstore://"
BASE = f"{SCHEME}bucket/models/m"
BASE_KEY = "bucket/models/m"


# --- the emulated object store --------------------------------------------------------

class ObjectStore:
    """A bucket as GCS and S3 document it: a flat map of object name -> bytes.

    - an object appears whole when its upload completes (`put`), never part-written;
    - a "folder" is only a name prefix: it exists as soon as any object has the prefix;
    - `observers` are called as `observer(op, key)` after every object write and delete,
      so a test sees each state the store passes through.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.observers: list[Callable[[str, str], None]] = []

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)
        self.writes.append(key)
        self._notify("write", key)

    def delete(self, key: str) -> None:
        del self.objects[key]
        self._notify("delete", key)

    def keys_under(self, prefix: str) -> list[str]:
        """Object names below `prefix/`, in listing (lexicographic) order."""
        start = prefix.rstrip("/") + "/"
        return sorted(key for key in self.objects if key.startswith(start))

    def files_under(self, prefix: str) -> dict[str, bytes]:
        """{name relative to `prefix`: bytes} below `prefix`."""
        start = prefix.rstrip("/") + "/"
        return {key[len(start):]: self.objects[key] for key in self.keys_under(prefix)}

    def _notify(self, op: str, key: str) -> None:
        for observer in list(self.observers):
            observer(op, key)


def _key(path: Any) -> str:
    path = path.decode() if isinstance(path, bytes) else str(path)
    assert path.startswith(SCHEME), path
    return path[len(SCHEME):].rstrip("/")


class _Upload(io.BytesIO):
    """A file opened for writing: the object is created when it is closed."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        super().__init__()
        self._store, self._key = store, key

    def write(self, data: Any) -> int:
        return super().write(data.encode() if isinstance(data, str) else data)

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            super().close()
            self._store.put(self._key, data)


class ObjectStoreFilesystem(filesystem.Filesystem):
    """TFX filesystem plugin over an `ObjectStore` (bound by a subclass, see `store`).

    As tf.io.gfile on GCS: `listdir` derives folders from name prefixes (returned as
    `name/`), `exists`/`isdir` hold as soon as an object has the prefix, `makedirs` writes
    a zero-byte marker object `folder/` per missing level (TensorFlow's GcsFileSystem::
    CreateDir), and renaming a folder copies each object then deletes it, one object at a
    time in listing order: not atomic.
    """

    SUPPORTED_SCHEMES = [SCHEME]
    store: ObjectStore

    @classmethod
    def open(cls, name: Any, mode: str = "r") -> Any:
        key = _key(name)
        if "w" in mode:
            return _Upload(cls.store, key)
        if key not in cls.store.objects:
            raise filesystem.NotFoundError(f"no object {key}")
        data = cls.store.objects[key]
        return io.BytesIO(data) if "b" in mode else io.StringIO(data.decode())

    @classmethod
    def copy(cls, src: Any, dst: Any, overwrite: bool = False) -> None:
        if not overwrite and cls.exists(dst):
            raise OSError(f"{dst} exists")
        if _key(src) not in cls.store.objects:
            raise filesystem.NotFoundError(f"no object {src}")
        cls.store.put(_key(dst), cls.store.objects[_key(src)])

    @classmethod
    def exists(cls, path: Any) -> bool:
        return _key(path) in cls.store.objects or cls.isdir(path)

    @classmethod
    def isdir(cls, path: Any) -> bool:
        return bool(cls.store.keys_under(_key(path)))

    @classmethod
    def listdir(cls, path: Any) -> list[str]:
        if not cls.isdir(path):
            raise filesystem.NotFoundError(f"no folder {path}")
        children: dict[str, None] = {}
        start = _key(path) + "/"
        for key in cls.store.keys_under(_key(path)):
            head, slash, _ = key[len(start):].partition("/")
            if head:  # "" is the folder's own marker object
                children[head + slash] = None
        return list(children)

    @classmethod
    def glob(cls, pattern: Any) -> list[str]:
        return [SCHEME + key for key in sorted(cls.store.objects)
                if fnmatch.fnmatch(SCHEME + key, str(pattern))]

    @classmethod
    def makedirs(cls, path: Any) -> None:
        parts = _key(path).split("/")
        for depth in range(2, len(parts) + 1):  # parts[0] is the bucket
            level = "/".join(parts[:depth])
            if not cls.exists(SCHEME + level):
                cls.store.put(level + "/", b"")

    @classmethod
    def mkdir(cls, path: Any) -> None:
        cls.store.put(_key(path) + "/", b"")

    @classmethod
    def remove(cls, path: Any) -> None:
        if _key(path) not in cls.store.objects:
            raise filesystem.NotFoundError(f"no object {path}")
        cls.store.delete(_key(path))

    @classmethod
    def rename(cls, src: Any, dst: Any, overwrite: bool = False) -> None:
        if not overwrite and cls.exists(dst):
            raise OSError(f"{dst} exists")
        source, target = _key(src), _key(dst)
        if source in cls.store.objects:
            cls.store.put(target, cls.store.objects[source])
            cls.store.delete(source)
            return
        keys = cls.store.keys_under(source)
        if not keys:
            raise filesystem.NotFoundError(f"no folder {src}")
        for key in keys:
            cls.store.put(target + key[len(source):], cls.store.objects[key])
            cls.store.delete(key)

    @classmethod
    def rmtree(cls, path: Any) -> None:
        keys = cls.store.keys_under(_key(path))
        if not keys:
            raise filesystem.NotFoundError(f"no folder {path}")
        for key in keys:
            cls.store.delete(key)

    @classmethod
    def walk(cls, top: Any, topdown: bool = True,
             onerror: Optional[Callable[..., None]] = None) -> Iterator[tuple]:
        if not cls.isdir(top):
            return
        entries = cls.listdir(top)
        folders = [entry.rstrip("/") for entry in entries if entry.endswith("/")]
        files = [entry for entry in entries if not entry.endswith("/")]
        yield str(top), folders, files
        for folder in folders:
            yield from cls.walk(os.path.join(str(top), folder), topdown, onerror)


class OverlayRegistry(filesystem_registry.FilesystemRegistry):
    """A registry with one more plugin, deferring every other scheme to `underlying`.

    Patched in as TFX's default registry for one test, so the test scheme never reaches
    the real one (TFX has no way to unregister a plugin).
    """

    def __init__(self, plugin: Type[filesystem.Filesystem],
                 underlying: filesystem_registry.FilesystemRegistry) -> None:
        super().__init__()
        self.register(plugin, priority=0)
        self._schemes = set(plugin.SUPPORTED_SCHEMES)
        self._underlying = underlying

    def get_filesystem_for_scheme(self, scheme: Any) -> Type[filesystem.Filesystem]:
        name = scheme.decode() if isinstance(scheme, bytes) else scheme
        if name in self._schemes:
            return super().get_filesystem_for_scheme(name)
        return self._underlying.get_filesystem_for_scheme(name)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """An empty object store behind `objstore://` for this test only."""
    bucket = ObjectStore()
    plugin = type("BoundObjectStoreFilesystem", (ObjectStoreFilesystem,), {"store": bucket})
    overlay = OverlayRegistry(plugin, filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY)
    monkeypatch.setattr(filesystem_registry, "DEFAULT_FILESYSTEM_REGISTRY", overlay)
    return bucket


# --- what a polling TF Serving sees -----------------------------------------------------

class PollingServer:
    """Looks at the store after every object write or delete as TF Serving would.

    Its file-system source takes each integer name among the first components of the
    object names under the base path as a version; a load of a version succeeds iff its
    graph file is there (without variables it "succeeds" and fails requests:
    tensorflow/serving#1086). Records every loadable state in which a file of the source
    model is missing or differs.
    """

    def __init__(self, store: ObjectStore, base_key: str, model_files: dict[str, bytes]):
        self.store, self.base_key, self.model_files = store, base_key, model_files
        self.polls = 0
        self.loadable: set[int] = set()
        self.seen_unloadable: set[int] = set()
        self.half_written_loads: list[tuple[int, list[str]]] = []
        store.observers.append(self.poll)

    def versions(self) -> set[int]:
        names = {key.split("/", 1)[0] for key in self.store.files_under(self.base_key)}
        return {int(name) for name in names if name.isdigit()}

    def poll(self, _op: str = "", _key: str = "") -> None:
        self.polls += 1
        for version in self.versions():
            files = self.store.files_under(f"{self.base_key}/{version}")
            if not any(name in files for name in versioned_pusher.GRAPH_FILES):
                self.seen_unloadable.add(version)  # the load fails and is retried
                continue
            self.loadable.add(version)
            wrong = sorted(name for name, data in self.model_files.items()
                           if files.get(name) != data)
            if wrong:
                self.half_written_loads.append((version, wrong))


def local_files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture
def model_dir(saved_model: Path) -> Path:
    return saved_model / "Format-Serving"


def publish(model_dir: Path, manifest: Optional[dict] = None) -> tuple[int, str]:
    return versioned_pusher.publish_model(str(model_dir), BASE, manifest or {})


def top_level(store: ObjectStore) -> set[str]:
    return {key.split("/", 1)[0] for key in store.files_under(BASE_KEY)}


# --- the tests --------------------------------------------------------------------------

def test_object_store_is_decided_by_scheme():
    assert versioned_pusher.is_object_store("gs://bucket/models/m")
    assert versioned_pusher.is_object_store("S3://bucket/m")
    assert versioned_pusher.is_object_store(BASE)
    assert not versioned_pusher.is_object_store("/srv/serving_models/m")
    assert not versioned_pusher.is_object_store("file:///srv/serving_models/m")
    assert not versioned_pusher.is_object_store("serving_models/m")


def test_upload_order_puts_the_graph_last():
    order = versioned_pusher.upload_order(
        ["saved_model.pb", "variables/variables.index", "fingerprint.pb",
         "variables/variables.data-00000-of-00001", "assets.extra/push_manifest.json"])
    assert order[-1] == "saved_model.pb"
    assert order[:-1] == sorted(order[:-1])


def test_versions_1_then_2_hold_the_source_files_and_a_manifest(
        store: ObjectStore, model_dir: Path, tmp_path: Path):
    source = local_files(model_dir)
    assert publish(model_dir, {"run": "a"}) == (1, f"{BASE}/1")
    assert publish(model_dir, {"run": "b"}) == (2, f"{BASE}/2")
    assert versioned_pusher.existing_versions(BASE) == [1, 2]
    for version, run in ((1, "a"), (2, "b")):
        files = store.files_under(f"{BASE_KEY}/{version}")
        manifest = json.loads(files.pop(versioned_pusher.MANIFEST_PATH))
        assert manifest == {"run": run, "version": version}
        assert files == source
        assert versioned_pusher.read_manifest(f"{BASE}/{version}") == manifest
    # what was pushed is a SavedModel TensorFlow loads and runs
    out = tmp_path / "2"
    for name, data in store.files_under(f"{BASE_KEY}/2").items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    loaded = tf.saved_model.load(str(out))
    result = loaded.signatures["serving_default"](x=tf.constant([1.5]))
    assert result["y"].numpy().tolist() == [3.0]


def test_a_polling_server_never_loads_a_half_written_version(store: ObjectStore,
                                                             model_dir: Path):
    server = PollingServer(store, BASE_KEY, local_files(model_dir))
    publish(model_dir)
    publish(model_dir)
    assert server.half_written_loads == []
    assert server.loadable == {1, 2}
    # the versions were visible, unloadable, while their files were being copied
    assert server.seen_unloadable == {1, 2}
    assert server.polls >= 2 * len(server.model_files)


@pytest.mark.parametrize("naive", ["copy_dir_into_the_version", "stage_and_rename"])
def test_the_polling_server_catches_a_naive_copy(store: ObjectStore, model_dir: Path,
                                                 naive: str):
    """The check above is real: the ways that work on a local disk, used on a bucket,
    let a server load a version before its variables are there."""
    server = PollingServer(store, BASE_KEY, local_files(model_dir))
    if naive == "copy_dir_into_the_version":  # TFX's stock filesystem Pusher does this
        io_utils.copy_dir(str(model_dir), f"{BASE}/1")
    else:  # the local path of this pusher: stage, then "rename" (copy + delete per object)
        staging = f"{BASE}/.staging-{int(time.time())}-naive"
        io_utils.copy_dir(str(model_dir), staging)
        versioned_pusher._rename_into_next_version(staging, BASE, {})
    version, missing = server.half_written_loads[0]
    assert version == 1
    assert "variables/variables.index" in missing
    # and both leave directory-marker objects in the version (the next test's check)
    assert [key for key in store.keys_under(f"{BASE_KEY}/1") if key.endswith("/")]


def test_no_directory_marker_objects_are_written(store: ObjectStore, model_dir: Path):
    publish(model_dir)
    publish(model_dir)
    assert [key for key in store.writes if key.endswith("/")] == []
    assert not [key for key in store.objects if key.endswith("/")]


def test_staging_is_removed_and_the_last_version_recorded(store: ObjectStore,
                                                          model_dir: Path):
    publish(model_dir)
    assert top_level(store) == {"1", versioned_pusher.VERSION_RECORD}
    assert store.objects[f"{BASE_KEY}/.last_version"] == b"1"
    publish(model_dir)
    assert top_level(store) == {"1", "2", versioned_pusher.VERSION_RECORD}
    assert store.objects[f"{BASE_KEY}/.last_version"] == b"2"
    assert any("/.staging-" in key for key in store.writes)  # it was staged, then removed

    io_utils.delete_dir(f"{BASE}/2")  # a rollback deleting the newest version
    assert publish(model_dir)[0] == 3  # versions never go back


def test_abandoned_staging_is_removed_and_one_in_progress_kept(store: ObjectStore,
                                                               model_dir: Path):
    long_ago = int(time.time()) - versioned_pusher.ABANDONED_STAGING_S - 60
    abandoned = f"{BASE_KEY}/.staging-{long_ago}-deadbeef"
    in_progress = f"{BASE_KEY}/.staging-{int(time.time()) - 60}-cafe0123"
    for folder in (abandoned, in_progress):
        store.put(f"{folder}/variables/variables.index", b"x")
    publish(model_dir)
    assert not store.keys_under(abandoned)
    assert store.keys_under(in_progress)


def test_a_version_whose_graph_is_present_is_skipped(store: ObjectStore, model_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    """Another run completed version 1 after this push chose the number: this push must
    not write into it, and lands as version 2."""
    publish(model_dir, {"run": "other"})
    real_next_version = versioned_pusher.next_version
    answers = iter([1])  # stale: chosen before the other run's copy
    monkeypatch.setattr(versioned_pusher, "next_version",
                        lambda folder: next(answers, None) or real_next_version(folder))
    written_before = len(store.writes)

    assert publish(model_dir, {"run": "this"}) == (2, f"{BASE}/2")
    assert not [key for key in store.writes[written_before:]
                if key.startswith(f"{BASE_KEY}/1/")]
    assert versioned_pusher.read_manifest(f"{BASE}/1") == {"run": "other", "version": 1}
    assert versioned_pusher.read_manifest(f"{BASE}/2") == {"run": "this", "version": 2}
    assert store.objects[f"{BASE_KEY}/.last_version"] == b"2"


def test_a_copy_failing_part_way_leaves_no_version(store: ObjectStore, model_dir: Path):
    publish(model_dir)

    def quota_exceeded(op: str, key: str) -> None:
        if op == "write" and key == f"{BASE_KEY}/2/variables/variables.index":
            raise OSError("quota exceeded")

    store.observers.append(quota_exceeded)
    with pytest.raises(OSError, match="quota exceeded"):
        publish(model_dir)
    assert top_level(store) == {"1", versioned_pusher.VERSION_RECORD}
    assert versioned_pusher.existing_versions(BASE) == [1]
    assert store.objects[f"{BASE_KEY}/.last_version"] == b"1"


def test_a_folder_that_is_not_a_saved_model_is_refused(store: ObjectStore, tmp_path: Path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "variables.index").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a SavedModel"):
        versioned_pusher.publish_model(str(tmp_path), BASE, {})
    assert not store.objects


def _run_executor(saved_model: Path, tmp_path: Path) -> standard_artifacts.PushedModel:
    model = standard_artifacts.Model()
    model.uri, model.id = str(saved_model), 7
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=BASE))
    versioned_pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


def test_executor_pushes_to_a_bucket_once(store: ObjectStore,
                                         saved_model: Path,  # noqa: F811
                                         tmp_path: Path):
    first = _run_executor(saved_model, tmp_path)
    assert first.get_string_custom_property("pushed_version") == "1"
    assert versioned_pusher.read_manifest(f"{BASE}/1")["model_uri"] == str(saved_model)
    again = _run_executor(saved_model, tmp_path)
    assert again.get_int_custom_property("pushed") == 0
    assert versioned_pusher.existing_versions(BASE) == [1]


def test_a_push_killed_part_way_is_not_taken_for_the_served_model(
        store: ObjectStore, saved_model: Path, tmp_path: Path):  # noqa: F811
    """A killed push left version 2 without its graph but with its manifest: the same
    model is pushed again, as version 3 (2 is never reused)."""
    _run_executor(saved_model, tmp_path)
    for name, data in store.files_under(f"{BASE_KEY}/1").items():
        if not versioned_pusher.is_graph_file(name):
            store.put(f"{BASE_KEY}/2/{name}", data)
    pushed = _run_executor(saved_model, tmp_path)
    assert pushed.get_string_custom_property("pushed_version") == "3"
    assert versioned_pusher.existing_versions(BASE) == [1, 2, 3]


def test_the_test_scheme_is_not_left_registered():
    """Runs after the tests above: outside their fixture, TFX's registry is untouched."""
    plugin = filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.get_filesystem_for_path(BASE)
    assert not issubclass(plugin, ObjectStoreFilesystem)
    assert fileio.exists(__file__)
