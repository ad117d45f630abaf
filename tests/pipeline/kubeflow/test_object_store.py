"""Buckets as KFP's launcher sees them (keys), on real local servers of both stores' APIs:
fake-gcs-server behind the *.googleapis.com proxy, and moto's S3 server
(tests/object_stores.py). No cloud is reached."""
from __future__ import annotations

import pytest

from pipeline.kubeflow import object_store
from tests.object_stores import new_bucket


@pytest.fixture(params=["gcs", "s3"])
def bucket_uri(request, monkeypatch) -> str:
    store = request.getfixturevalue(f"local_{request.param}")
    for name, value in store.environment().items():
        monkeypatch.setenv(name, value)
    scheme = "gs://" if request.param == "gcs" else "s3://"
    return f"{scheme}{new_bucket(store, 'keys')}"


def test_uris_split_as_kfp_splits_them():
    assert object_store.parse("gs://b/root/a/b") == object_store.Location("gs://", "b",
                                                                          "root/a/b")
    assert object_store.parse("s3://b").key == ""
    for uri in ("/local/folder", "file:///x", "http://host/b"):
        with pytest.raises(object_store.StoreError, match="not a bucket URI"):
            object_store.parse(uri)


def test_write_list_read_and_delete_keys(bucket_uri):
    bucket = object_store.open_bucket(bucket_uri)
    bucket.write("root/model/saved_model.pb", b"abc")
    bucket.write("root/model_run/log", b"")
    assert [(o.key, o.size) for o in bucket.list("root/model")] == [
        ("root/model/saved_model.pb", 3), ("root/model_run/log", 0)]  # a plain prefix
    assert bucket.read("root/model/saved_model.pb") == b"abc"
    bucket.delete("root/model_run/log")
    assert [o.key for o in bucket.list("root/")] == ["root/model/saved_model.pb"]


def test_folder_markers_under_an_artifact_are_removed_and_nothing_else(bucket_uri):
    """Zero-byte `…/` keys at and under the artifact go; files (empty ones too) and the
    markers of a sibling whose name merely starts the same stay."""
    bucket = object_store.open_bucket(bucket_uri)
    for key, data in [("run/T/model/", b""), ("run/T/model/variables/", b""),
                      ("run/T/model/variables/data", b"12"), ("run/T/model/empty.txt", b""),
                      ("run/T/model_run/", b""), ("run/T/", b"")]:
        bucket.write(key, data)
    removed = object_store.remove_folder_markers(f"{bucket_uri}/run/T/model")
    assert sorted(removed) == ["run/T/model/", "run/T/model/variables/"]
    assert [o.key for o in bucket.list("run/")] == [
        "run/T/", "run/T/model/empty.txt", "run/T/model/variables/data", "run/T/model_run/"]


def test_a_missing_bucket_is_a_store_error_naming_it(bucket_uri):
    missing = bucket_uri.rsplit("/", 1)[0] + "/no-such-bucket-here"
    scheme = missing.split("://")[0]
    with pytest.raises(object_store.StoreError, match=f"list {scheme}://no-such-bucket-here/x"):
        object_store.open_bucket(missing).list("x")
