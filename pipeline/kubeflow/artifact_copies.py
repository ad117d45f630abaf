"""KFP's launcher copying artifacts between a bucket and a pod, for the emulated backend.

Before a task's command starts, KFP's launcher downloads every input artifact from the
bucket into the pod; after it ends, it uploads whatever the command left at each output's
local path (`component/launcher_v2.go` `downloadArtifacts`, `uploadOutputArtifacts`, with
`objectstore/object_store.go` `DownloadBlob`, `UploadBlob`, `downloadFile`; tags 2.0.5 and
2.5.0 behave alike here). Written from that source, with its consequences kept:

- the listing is a plain string prefix (`…/Trainer/model` also takes `…/Trainer/model_run/…`,
  which `filepath.Rel` then places beside the artifact's folder);
- each key is made relative with `filepath.Rel`, so a zero-byte folder object `<key>/`
  becomes `.` and is written as a *file* where the folder belongs; the next key under it
  fails with "not a directory" (kubeflow/pipelines#13476);
- a missing local output is skipped (components need not write their local paths).

Errors carry the launcher's wording, with the pod's paths (`/gcs/…`, `/s3/…`, `/minio/…`).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from pipeline.kubeflow import object_store

_POD_FOLDERS = (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/"))


class CopyError(Exception):
    """The launcher could not copy an artifact: the task fails with this message."""


def pod_path(uri: str) -> str:
    """`LocalPathForURI`: where the launcher puts a bucket artifact inside the pod."""
    for scheme, folder in _POD_FOLDERS:
        if uri.startswith(scheme):
            return folder + uri[len(scheme):]
    return uri


@dataclass(frozen=True)
class PodFiles:
    """The pod's `/gcs`, `/s3` and `/minio` folders, kept on this machine under `root`."""

    root: Path

    def host(self, pod_path_: str) -> Path:
        return self.root / pod_path_.lstrip("/")

    def shown(self, host_path: Path) -> str:
        return "/" + str(host_path.relative_to(self.root))


def download(name: str, uri: str, pod: PodFiles) -> int:
    """`downloadArtifacts` for one input: every key under the artifact's prefix.

    Returns:
        The bytes copied.

    Raises:
        CopyError: as the launcher fails, in its words.
    """
    def failed(reason: str) -> CopyError:
        return CopyError(f"failed to download input artifact {name!r} from remote storage "
                         f"URI {uri!r}: {reason}")

    try:
        location = object_store.parse(uri)
        bucket = object_store.open_bucket(uri)
        if not location.key:
            raise failed(f"URI {uri!r} has empty key")
        local_dir = pod.host(pod_path(uri))
        copied = 0
        for item in bucket.list(location.key):
            relative = posixpath.relpath(item.key, location.key)  # filepath.Rel
            target = Path(posixpath.normpath(posixpath.join(str(local_dir), relative)))
            copied += _download_file(bucket, item.key, target, pod, failed)
        return copied
    except object_store.StoreError as error:
        raise failed(str(error)) from None


def _download_file(bucket: object_store.Bucket, key: str, target: Path, pod: PodFiles,
                   failed) -> int:
    """`downloadFile`: read the object, `MkdirAll` its folder, `os.Create` the file."""
    def copying(reason: str) -> CopyError:
        return failed(f"downloadFile(): unable to complete copying {key!r} to local storage "
                      f"{pod.shown(target)!r}: {reason}")

    data = bucket.read(key)
    problem = _mkdir_all(target.parent, pod)
    if problem:
        raise copying(f"failed to create local directory {pod.shown(target.parent)!r}: "
                      f"{problem}")
    if target.is_dir():
        raise copying(f"unable to open local file {pod.shown(target)!r} for writing: "
                      f"open {pod.shown(target)}: is a directory")
    target.write_bytes(data)
    return len(data)


def _mkdir_all(folder: Path, pod: PodFiles) -> str:
    """Go's `os.MkdirAll`: "" on success, else its error for the first file in the way."""
    for candidate in [*reversed(folder.parents), folder]:
        if candidate.exists() and not candidate.is_dir():
            return f"mkdir {pod.shown(candidate)}: not a directory"
    folder.mkdir(parents=True, exist_ok=True)
    return ""


def upload(name: str, uri: str, pod: PodFiles) -> int:
    """`uploadOutputArtifacts` for one output: what the command left at its local path.

    Returns:
        The bytes copied (0 when the local path does not exist, which the launcher allows).

    Raises:
        CopyError: the store refused an upload.
    """
    local = pod.host(pod_path(uri))
    if not local.exists():  # "Local filepath %q does not exist": skipped
        return 0
    try:
        location = object_store.parse(uri)
        bucket = object_store.open_bucket(uri)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        copied = 0
        for path in files:
            relative = "" if path == local else "/" + path.relative_to(local).as_posix()
            data = path.read_bytes()
            bucket.write(location.key + relative, data)
            copied += len(data)
        return copied
    except object_store.StoreError as error:
        raise CopyError(f"failed to upload output artifact {name!r} to remote storage URI "
                        f"{uri!r}: {error}") from None
