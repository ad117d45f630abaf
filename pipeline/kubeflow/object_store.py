"""The buckets a Kubeflow install keeps artifacts in, seen as KFP's launcher sees them: keys.

Why a second view beside TensorFlow's file system: TFX writes through `tf.io.gfile`, which
shows folders; KFP's launcher lists *object keys* under an artifact's prefix and copies each
one (`backend/src/v2/objectstore/object_store.go`). What breaks a run lives only in that
view: TensorFlow's GCS filesystem writes a zero-byte object named `<folder>/` for each
folder it creates, which KFP 2.0.5-2.5.0 (and HEAD) downloads as a *file* where the folder
belongs (kubeflow/pipelines#13476). The task entrypoint removes those markers
(`remove_folder_markers`), and the emulated launcher downloads with the same key semantics.

Clients are the ones the image already holds: google-cloud-storage for `gs://` (default
credentials: Workload Identity, or `GOOGLE_APPLICATION_CREDENTIALS`), boto3 for `s3://`
and `minio://` (credentials and `AWS_ENDPOINT_URL` from the environment, as Beam's S3
filesystem reads them).
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

SCHEMES = ("gs://", "s3://", "minio://")  # objectstore.ParseBucketConfig's
_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9]+://)(?P<bucket>[^/?]+)(?P<key>/[^?]*)?$")


class StoreError(Exception):
    """A URI that names no supported bucket, or a store that refused a request."""


@dataclass(frozen=True)
class Location:
    """`gs://bucket/key`, split as KFP's `ParseBucketConfigForArtifactURI` splits it."""

    scheme: str
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}{self.bucket}/{self.key}"


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing returns it."""

    key: str
    size: int


class Bucket(Protocol):
    """The four operations KFP's launcher performs on its bucket (gocloud.dev `blob`)."""

    def list(self, prefix: str) -> list[StoredObject]:
        """Every object whose key starts with `prefix` (a plain string prefix), by key."""

    def read(self, key: str) -> bytes:
        """The object's bytes."""

    def write(self, key: str, data: bytes) -> None:
        """Creates or replaces the object."""

    def delete(self, key: str) -> None:
        """Removes the object."""


def is_object_store_uri(uri: str) -> bool:
    """Whether `uri` lives in a bucket (gs://, s3://, minio://) rather than a file system."""
    return uri.startswith(SCHEMES)


def parse(uri: str) -> Location:
    """Splits a bucket URI.

    Raises:
        StoreError: `uri` is not `<gs|s3|minio>://bucket[/key]`.
    """
    match = _URI.match(uri)
    if not match or match["scheme"] not in SCHEMES:
        raise StoreError(f"not a bucket URI ({', '.join(SCHEMES)}): {uri!r}")
    return Location(match["scheme"], match["bucket"], (match["key"] or "/").lstrip("/"))


def open_bucket(uri: str) -> Bucket:
    """A client for the bucket `uri` names, from the environment's credentials.

    Raises:
        StoreError: as `parse`.
    """
    location = parse(uri)
    try:
        if location.scheme == "gs://":
            return _GcsBucket(location.bucket)
        return _S3Bucket(location.bucket, location.scheme)
    except Exception as error:  # noqa: BLE001 (narrowed to the clients' families)
        if not _is_client_error(error):
            raise
        raise StoreError(f"cannot open {location.scheme}{location.bucket}: "
                         f"{type(error).__name__}: {error}") from error


def folder_markers(bucket: Bucket, key: str) -> list[StoredObject]:
    """The zero-byte `…/` objects at or under `key` (the artifact's own marker included)."""
    folder = key.rstrip("/") + "/"
    return [item for item in bucket.list(folder)
            if item.key.endswith("/") and item.size == 0]


def remove_folder_markers(uri: str) -> list[str]:
    """Deletes the zero-byte folder objects under the artifact at `uri`; returns their keys.

    Folders in a bucket are implied by the keys below them, so TensorFlow, Beam and
    `tensorflow_model_server` read the artifact the same without them; KFP's launcher can
    then copy it into a pod (kubeflow/pipelines#13476).

    Raises:
        StoreError: as `open_bucket`, or the store refused the listing or a deletion.
    """
    location = parse(uri)
    bucket = open_bucket(uri)
    removed = []
    for marker in folder_markers(bucket, location.key):
        bucket.delete(marker.key)
        removed.append(marker.key)
    return removed


_Result = TypeVar("_Result")
# The clients' own exception families (google-cloud-storage, google-auth, boto3, requests).
_CLIENT_ERROR_MODULES = ("google.", "botocore.", "boto3.", "requests.", "urllib3.")


def _is_client_error(error: Exception) -> bool:
    return isinstance(error, OSError) or type(error).__module__.startswith(_CLIENT_ERROR_MODULES)


def _store_errors(method: Callable[..., _Result]) -> Callable[..., _Result]:
    """Turns a client's exception into a StoreError naming the bucket and key."""
    @functools.wraps(method)
    def call(self: Any, key: str, *args: Any) -> _Result:
        try:
            return method(self, key, *args)
        except Exception as error:  # noqa: BLE001 (narrowed to the clients' families)
            if not _is_client_error(error):
                raise
            raise StoreError(f"{method.__name__} {self.scheme}{self.name}/{key}: "
                             f"{type(error).__name__}: {error}") from error
    return call


class _GcsBucket:
    scheme = "gs://"

    def __init__(self, name: str):
        from google.cloud import storage

        self.name = name
        # Reads and writes in a named bucket need no project (only listing buckets does),
        # and Workload Identity or a user's key may not name one.
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "no-project-needed"
        self._bucket = storage.Client(project=project).bucket(name)

    @_store_errors
    def list(self, prefix: str) -> list[StoredObject]:
        return [StoredObject(blob.name, int(blob.size or 0))
                for blob in self._bucket.client.list_blobs(self._bucket, prefix=prefix)]

    @_store_errors
    def read(self, key: str) -> bytes:
        return self._bucket.blob(key).download_as_bytes()

    @_store_errors
    def write(self, key: str, data: bytes) -> None:
        self._bucket.blob(key).upload_from_string(data)

    @_store_errors
    def delete(self, key: str) -> None:
        self._bucket.blob(key).delete()


class _S3Bucket:
    def __init__(self, name: str, scheme: str):
        import boto3

        self.name, self.scheme = name, scheme
        self._client = boto3.client("s3")  # AWS_ENDPOINT_URL, keys and region from the env

    @_store_errors
    def list(self, prefix: str) -> list[StoredObject]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name,
                                                                       Prefix=prefix)
        return [StoredObject(item["Key"], int(item["Size"]))
                for page in pages for item in page.get("Contents", [])]

    @_store_errors
    def read(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self.name, Key=key)["Body"].read()

    @_store_errors
    def write(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.name, Key=key, Body=data)

    @_store_errors
    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.name, Key=key)
