"""KFP's launcher copies between a bucket and a pod (`artifact_copies`), checked against
what KFP's Go source does (kubeflow/pipelines, `backend/src/v2/objectstore/object_store.go`
`DownloadBlob`, `UploadBlob`, `downloadFile`; `component/launcher_v2.go`
`downloadArtifacts`, `uploadOutputArtifacts`, `LocalPathForURI`; tags 2.0.5 and 2.5.0), on
moto's S3 server (keys are keys on every store; the GCS path runs in test_emulator.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.kubeflow import artifact_copies, object_store
from tests.object_stores import new_bucket


@pytest.fixture
def bucket(local_s3, monkeypatch) -> str:
    for name, value in local_s3.environment().items():
        monkeypatch.setenv(name, value)
    return new_bucket(local_s3, "copies")


def put(bucket: str, objects: dict[str, bytes]) -> None:
    store = object_store.open_bucket(f"s3://{bucket}")
    for key, data in objects.items():
        store.write(key, data)


def test_pod_paths_are_kfp_s_local_paths():
    assert artifact_copies.pod_path("gs://b/r/T/model") == "/gcs/b/r/T/model"
    assert artifact_copies.pod_path("s3://b/r") == "/s3/b/r"
    assert artifact_copies.pod_path("minio://b/r") == "/minio/b/r"
    assert artifact_copies.pod_path("/local/root/x") == "/local/root/x"


def test_an_artifact_is_copied_key_by_key_and_a_plain_prefix_takes_its_sibling(
        bucket, tmp_path: Path):
    """`bucket.List(Prefix: key)` is a string prefix on 2.0.5/2.5.0: `…/model` also lists
    `…/model_run/…`, which `filepath.Rel` places beside the artifact (`../model_run`)."""
    put(bucket, {"r/T/model/saved_model.pb": b"pb", "r/T/model/variables/v": b"vv",
                 "r/T/model_run/log": b"log"})
    pod = artifact_copies.PodFiles(tmp_path)
    copied = artifact_copies.download("model", f"s3://{bucket}/r/T/model", pod)
    local = tmp_path / "s3" / bucket / "r" / "T"
    assert (local / "model" / "saved_model.pb").read_bytes() == b"pb"
    assert (local / "model" / "variables" / "v").read_bytes() == b"vv"
    assert (local / "model_run" / "log").read_bytes() == b"log"
    assert copied == 7


def test_a_folder_marker_becomes_a_file_and_the_next_key_fails(bucket, tmp_path: Path):
    """The zero-byte `…/examples/` is `filepath.Rel`'d to `.`, `downloadFile` creates the
    artifact's own path as a file, and `os.MkdirAll` for the next key fails (#13476)."""
    put(bucket, {"r/E/examples/": b"", "r/E/examples/Split-train/data.gz": b"x"})
    uri = f"s3://{bucket}/r/E/examples"
    with pytest.raises(artifact_copies.CopyError) as failure:
        artifact_copies.download("examples", uri, artifact_copies.PodFiles(tmp_path))
    local = f"/s3/{bucket}/r/E/examples"
    assert str(failure.value) == (
        f"failed to download input artifact 'examples' from remote storage URI '{uri}': "
        f"downloadFile(): unable to complete copying 'r/E/examples/Split-train/data.gz' to "
        f"local storage '{local}/Split-train/data.gz': failed to create local directory "
        f"'{local}/Split-train': mkdir {local}: not a directory")
    assert (tmp_path / local.lstrip("/")).is_file()


def test_outputs_left_at_their_local_path_are_uploaded_and_missing_ones_skipped(
        bucket, tmp_path: Path):
    pod = artifact_copies.PodFiles(tmp_path)
    written = tmp_path / "s3" / bucket / "r" / "T" / "metrics"
    (written / "sub").mkdir(parents=True)
    (written / "a.json").write_bytes(b"{}")
    (written / "sub" / "b.txt").write_bytes(b"bee")
    assert artifact_copies.upload("metrics", f"s3://{bucket}/r/T/metrics", pod) == 5
    assert artifact_copies.upload("model", f"s3://{bucket}/r/T/model", pod) == 0
    keys = [o.key for o in object_store.open_bucket(f"s3://{bucket}").list("r/")]
    assert keys == ["r/T/metrics/a.json", "r/T/metrics/sub/b.txt"]
