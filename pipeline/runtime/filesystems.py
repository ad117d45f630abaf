"""Makes `s3://` (S3, MinIO) readable by TensorFlow in this process, and exits it safely after.

Why: TensorFlow 2.16 has `gs://` built in but reads `s3://` only through tensorflow-io's
filesystem plugin, registered when `tensorflow_io` is imported; Beam and boto3 read the
standard `AWS_ENDPOINT_URL`, tensorflow-io its own `S3_ENDPOINT` and `S3_USE_HTTPS`. A user
sets the one standard variable (with MinIO: the service's URL) and this module derives the
other two. tensorflow-io 0.37.1 beside TF 2.16.2 aborts the interpreter at exit ("pure
virtual method called", status 134), which KFP would record as a failed task after the
work succeeded: `exit_now` ends such a process without running the teardown that aborts.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, MutableMapping
from urllib.parse import urlparse

S3_SCHEMES = ("s3://",)


def s3_settings_from_aws(environ: MutableMapping[str, str]) -> None:
    """Sets tensorflow-io's `S3_ENDPOINT`/`S3_USE_HTTPS` from `AWS_ENDPOINT_URL` when unset."""
    endpoint = environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint or "S3_ENDPOINT" in environ:
        return
    # The URL whole: tensorflow-io 0.37.1 takes the scheme from it (given only host:port,
    # it speaks TLS whatever S3_USE_HTTPS says, which older readers still honour).
    environ["S3_ENDPOINT"] = endpoint
    environ.setdefault("S3_USE_HTTPS", "0" if urlparse(endpoint).scheme == "http" else "1")


def enable_for(uris: Iterable[str]) -> bool:
    """Registers tensorflow-io's `s3://` filesystem if any of `uris` needs it.

    Returns:
        Whether tensorflow-io was loaded (then end the process with `exit_now`).
    """
    if not any(str(uri).startswith(S3_SCHEMES) for uri in uris):
        return False
    s3_settings_from_aws(os.environ)
    import tensorflow_io  # noqa: F401  (registers s3:// with tf.io.gfile)

    return True


def exit_now(code: int) -> None:
    """Flushes logs and standard streams, then ends the process with `code` at once."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # noqa: SLF001 (skips the interpreter teardown that aborts)
