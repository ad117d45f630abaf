"""Makes `s3://` (S3, MinIO) readable by TensorFlow in this process, exits it safely after,
and keeps TensorFlow's `gs://` reads from paying for a 64 MB buffer per file.

Why: TensorFlow 2.16 has `gs://` built in but reads `s3://` only through tensorflow-io's
filesystem plugin, registered when `tensorflow_io` is imported; Beam and boto3 read the
standard `AWS_ENDPOINT_URL`, tensorflow-io its own `S3_ENDPOINT` and `S3_USE_HTTPS`. A user
sets the one standard variable (with MinIO: the service's URL) and this module derives the
other two. tensorflow-io 0.37.1 beside TF 2.16.2 aborts the interpreter at exit ("pure
virtual method called", status 134), which KFP would record as a failed task after the
work succeeded: such a process must end without the interpreter's teardown
(`serving.process.exit_now`, which the pods' entrypoint always uses).

TensorFlow's GCS filesystem allocates and zero-fills a read buffer of
`GCS_READ_CACHE_BLOCK_SIZE_MB` (64 MB by default) for every file it opens for reading:
about 45 ms of the kernel's time per file, and a TFX task on a `gs://` root opens hundreds
of small ones (schemas, statistics, the transform graph, a SavedModel's pieces). The
variable is read once, when TensorFlow is loaded, so `tune_gcs_reads` runs in the process
set-up before that (`process.before_tensorflow`); figures in docs/performance.md.

Beam's S3 filesystem builds a new boto3 session and client for every operation (each
`S3FileSystem` call makes an `S3IO`, whose client wrapper starts a session): 60-250 ms of
botocore set-up each, thousands of times in a Transform on `s3://`. `share_beam_s3_clients`
hands that wrapper one boto3 client per distinct setting instead (boto3 clients are
thread-safe; each wrapper keeps its own download state).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, MutableMapping
from urllib.parse import urlparse

S3_SCHEMES = ("s3://",)
GCS_READ_BLOCK_MB = "16"  # a quarter of TF's default: large sequential reads stay few requests


def s3_settings_from_aws(environ: MutableMapping[str, str]) -> None:
    """Sets tensorflow-io's `S3_ENDPOINT`/`S3_USE_HTTPS` from `AWS_ENDPOINT_URL` when unset."""
    endpoint = environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint or "S3_ENDPOINT" in environ:
        return
    # The URL whole: tensorflow-io 0.37.1 takes the scheme from it (given only host:port,
    # it speaks TLS whatever S3_USE_HTTPS says, which older readers still honour).
    environ["S3_ENDPOINT"] = endpoint
    environ.setdefault("S3_USE_HTTPS", "0" if urlparse(endpoint).scheme == "http" else "1")


def tune_gcs_reads(environ: MutableMapping[str, str]) -> None:
    """Sets TensorFlow's GCS read buffer to `GCS_READ_BLOCK_MB` unless the user set one
    (the pod's `kubeflow.env` wins). Must run before TensorFlow is imported."""
    environ.setdefault("GCS_READ_CACHE_BLOCK_SIZE_MB", GCS_READ_BLOCK_MB)


def enable_for(uris: Iterable[str]) -> bool:
    """Registers tensorflow-io's `s3://` filesystem if any of `uris` needs it.

    Returns:
        Whether tensorflow-io was loaded (then end the process with `process.exit_now`).
    """
    if not any(str(uri).startswith(S3_SCHEMES) for uri in uris):
        return False
    s3_settings_from_aws(os.environ)
    share_beam_s3_clients()
    import tensorflow_io  # noqa: F401  (registers s3:// with tf.io.gfile)

    return True


class _SharedBoto3:
    """Stands in for the `boto3` module inside Beam's S3 client wrapper, which calls
    `boto3.session.Session().client(...)` once per operation: the same keyword arguments
    get the same client, made once."""

    def __init__(self, boto3_module: Any) -> None:
        self._boto3 = boto3_module
        self._clients: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.session = self  # `boto3.session.Session()` -> `self.Session()`

    def Session(self) -> "_SharedBoto3":  # noqa: N802 (boto3's name)
        return self

    def client(self, **settings: Any) -> Any:
        key = tuple(sorted(settings.items()))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._boto3.session.Session().client(**settings)
            return self._clients[key]


def share_beam_s3_clients() -> None:
    """Makes Beam's S3 filesystem reuse one boto3 client per setting in this process."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    if boto3_client.boto3 is not None and not isinstance(boto3_client.boto3, _SharedBoto3):
        boto3_client.boto3 = _SharedBoto3(boto3_client.boto3)

