"""`s3://` for TensorFlow from the one standard variable (pipeline/runtime/filesystems.py).
The e2e run on S3 (tests/e2e/test_kubeflow_on_s3.py) sets only `AWS_ENDPOINT_URL`, so
its tasks reach the store through this derivation too."""
from __future__ import annotations

from pipeline.runtime import filesystems


def test_tensorflow_io_settings_come_from_aws_endpoint_url():
    environ = {"AWS_ENDPOINT_URL": "http://minio-service.kubeflow:9000"}
    filesystems.s3_settings_from_aws(environ)
    assert environ["S3_ENDPOINT"] == "http://minio-service.kubeflow:9000"  # scheme and all
    assert environ["S3_USE_HTTPS"] == "0"

    secure = {"AWS_ENDPOINT_URL": "https://s3.example.com"}
    filesystems.s3_settings_from_aws(secure)
    assert (secure["S3_ENDPOINT"], secure["S3_USE_HTTPS"]) == ("https://s3.example.com", "1")


def test_settings_a_user_gave_are_kept_and_nothing_is_set_without_an_endpoint():
    given = {"AWS_ENDPOINT_URL": "http://a:9000", "S3_ENDPOINT": "b:9000"}
    filesystems.s3_settings_from_aws(given)
    assert given == {"AWS_ENDPOINT_URL": "http://a:9000", "S3_ENDPOINT": "b:9000"}
    empty: dict[str, str] = {}
    filesystems.s3_settings_from_aws(empty)
    assert empty == {}


def test_only_an_s3_uri_loads_tensorflow_io():
    assert filesystems.enable_for(["gs://bucket/root", "/local/root", ""]) is False
