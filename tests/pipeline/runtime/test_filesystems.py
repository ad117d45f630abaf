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


def test_gcs_reads_get_a_smaller_buffer_unless_the_user_chose_one():
    environ: dict[str, str] = {}
    filesystems.tune_gcs_reads(environ)
    assert environ == {"GCS_READ_CACHE_BLOCK_SIZE_MB": filesystems.GCS_READ_BLOCK_MB}
    chosen = {"GCS_READ_CACHE_BLOCK_SIZE_MB": "64"}  # e.g. from the pod's kubeflow.env
    filesystems.tune_gcs_reads(chosen)
    assert chosen == {"GCS_READ_CACHE_BLOCK_SIZE_MB": "64"}


def test_beam_s3_operations_share_one_boto3_client_per_setting(monkeypatch):
    """Beam's S3 filesystem makes an `S3IO` per operation; its wrappers share the client."""
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import boto3_client

    monkeypatch.setattr(boto3_client, "boto3", boto3_client.boto3)  # restored after
    filesystems.share_beam_s3_clients()
    filesystems.share_beam_s3_clients()  # twice is once
    options = {"s3_endpoint_url": "http://127.0.0.1:9", "s3_region_name": "us-east-1",
               "s3_access_key_id": "key", "s3_secret_access_key": "secret"}
    first, second = s3io.S3IO(options=options), s3io.S3IO(options=options)
    assert first.client is not second.client  # each keeps its own download state
    assert first.client.client is second.client.client
    elsewhere = s3io.S3IO(options={**options, "s3_endpoint_url": "http://127.0.0.1:10"})
    assert elsewhere.client.client is not first.client.client
    assert elsewhere.client.client.meta.endpoint_url == "http://127.0.0.1:10"
