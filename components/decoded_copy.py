"""The decoded copy of an Examples split: Arrow files beside its gzipped tf.Example records.

Why: StatisticsGen and Transform both decode the same records into Arrow record batches
(tfx_bsl's `ExamplesToRecordBatchDecoder`), and at 1.5 M rows that decoding was most of
their time (bench/scale; figures in docs/performance.md), while ExampleGen, a moment
before, held every row as typed columns. So ExampleGen writes those columns too
(`csv_columns.to_decoded`, which tests hold equal to the decoder's batches), and the
readers (`example_batches.read`) take them instead of decoding: the same batches for a
fraction of the CPU.

Layout: the copy of `<uri>/Split-<name>/<file>` is `<uri>/Decoded-<name>/<file>.arrow`, an
Arrow IPC file (zstd) of that record file's rows in the records' order. Stock TFX reads
only `Split-*` folders, so it never sees the copy. `manifest.json` in the copy's folder,
written last, names each record file with its size in bytes: a reader takes the copy only
for record files the manifest names at their present size, so records written or
rewritten by anything else are decoded as before.

With a schema, the decoder keeps the schema's features, in its order and types, a
feature missing or without a kind in a record being null (`project`); a copy that cannot
give that exactly (a feature of another type than the schema's, a schema feature that is
not a plain INT, FLOAT or BYTES one) is not used.
"""
from __future__ import annotations

import itertools
import json
import os
from typing import Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.ipc as ipc
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.arrow import table_util

from components.csv_columns import DECODED_TYPES, Kind

RECORDS_PREFIX = "Split-"
COPY_PREFIX = "Decoded-"
COPY_SUFFIX = ".arrow"
MANIFEST = "manifest.json"
# zstd: the copy of 1.2 M taxi rows takes 34-44 MB (uncompressed 324 MB, lz4 125 MB), less
# than their gzipped records, and reads back in a third of a second, against seconds to
# decode the records.
_WRITE_OPTIONS = ipc.IpcWriteOptions(compression="zstd")

# The Arrow type tfx_bsl's decoder gives a schema feature of each type: the copy's own.
SCHEMA_TYPES = {schema_pb2.INT: DECODED_TYPES[Kind.INT],
                schema_pb2.FLOAT: DECODED_TYPES[Kind.FLOAT],
                schema_pb2.BYTES: DECODED_TYPES[Kind.STRING]}


def _local(path: str) -> bool:
    return "://" not in path


def copy_folder(records_folder: str) -> str:
    """Where the copy of a `Split-<name>` folder's records goes: `Decoded-<name>` beside it.

    Raises:
        ValueError: the folder is not a `Split-<name>` folder.
    """
    parent, name = os.path.split(records_folder.rstrip("/"))
    if not name.startswith(RECORDS_PREFIX):
        raise ValueError(f"{records_folder}: not a {RECORDS_PREFIX}<name> folder")
    return os.path.join(parent, COPY_PREFIX + name[len(RECORDS_PREFIX):])


def copy_path(record_file: str) -> str:
    """The copy of one record file."""
    folder, name = os.path.split(record_file)
    return os.path.join(copy_folder(folder), name + COPY_SUFFIX)


class CopyWriter:
    """The copy of one record file, written batch by batch beside it (one thread's)."""

    def __init__(self, record_file: str) -> None:
        self.record_file = record_file
        self.rows = 0
        self._sink: Optional[pa.NativeFile] = None
        self._writer: Optional[ipc.RecordBatchFileWriter] = None

    def write(self, batch: pa.RecordBatch) -> None:
        """Appends `batch`, the decoded rows of the records just written to the file."""
        if self._writer is None:
            path = copy_path(self.record_file)
            tf.io.gfile.makedirs(os.path.dirname(path))
            # A bucket's file is written whole at the end (TensorFlow's GCS and S3 writers
            # stage it locally anyway); Arrow's file writers need a file Arrow can open.
            self._sink = pa.OSFile(path, "wb") if _local(path) else pa.BufferOutputStream()
            self._writer = ipc.new_file(self._sink, batch.schema, options=_WRITE_OPTIONS)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        if isinstance(self._sink, pa.BufferOutputStream):
            with tf.io.gfile.GFile(copy_path(self.record_file), "wb") as stream:
                stream.write(self._sink.getvalue().to_pybytes())
        else:
            self._sink.close()


def write_manifest(writers: Iterable[CopyWriter]) -> None:
    """Records each writer's record file (closed: its final size) as copied, one manifest
    per copy folder; written after the copies, so a manifest names only finished ones."""
    by_folder: dict[str, dict] = {}
    for writer in writers:
        folder = copy_folder(os.path.dirname(writer.record_file))
        by_folder.setdefault(folder, {})[os.path.basename(writer.record_file)] = {
            "bytes": tf.io.gfile.stat(writer.record_file).length, "rows": writer.rows}
    for folder, files in by_folder.items():
        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(os.path.join(folder, MANIFEST), "w") as stream:
            json.dump({"records": files}, stream, indent=1, sort_keys=True)


def _manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST)
    try:
        with tf.io.gfile.GFile(path) as stream:
            return json.load(stream).get("records", {})
    except (tf.errors.NotFoundError, ValueError, AttributeError):
        return {}


def vouched_copies(record_files: list[str]) -> Optional[list[str]]:
    """The copies of `record_files` that hold rows, in their order, if every one of the
    files is vouched for by its folder's manifest (named there at its present size, its
    copy present unless it has no rows); else None."""
    if not record_files:
        return None
    manifests: dict[str, dict] = {}
    copies: list[str] = []
    for record_file in record_files:
        folder, name = os.path.split(record_file)
        try:
            copies_folder = copy_folder(folder)
        except ValueError:
            return None
        if copies_folder not in manifests:
            manifests[copies_folder] = _manifest(copies_folder)
        entry = manifests[copies_folder].get(name)
        if entry is None or entry.get("bytes") != tf.io.gfile.stat(record_file).length:
            return None
        if entry.get("rows") != 0:
            copies.append(copy_path(record_file))
            if not tf.io.gfile.exists(copies[-1]):
                return None
    return copies


def copied(record_files: list[str]) -> bool:
    """Whether every one of `record_files` has a copy readers may take (`vouched_copies`)."""
    return vouched_copies(record_files) is not None


def _open(path: str) -> ipc.RecordBatchFileReader:
    """A copy file, memory-mapped where local, else read whole (compressed, it is smaller
    than the records it mirrors)."""
    if _local(path):
        return ipc.open_file(pa.memory_map(path))
    with tf.io.gfile.GFile(path, "rb") as stream:
        return ipc.open_file(pa.BufferReader(stream.read()))


def _file_batches(first: ipc.RecordBatchFileReader, rest: list[str]
                  ) -> Iterator[pa.RecordBatch]:
    """The batches of the copy already open, then of the others, one file open at a time."""
    for reader in itertools.chain([first], map(_open, rest)):
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def projectable(arrow_schema: pa.Schema, schema: schema_pb2.Schema) -> bool:
    """Whether `project` gives exactly what the decoder gives with `schema`: plain
    features of the decoder's types, each in the copy with that type or without a kind."""
    if schema.sparse_feature or schema.weighted_feature:
        return False
    for feature in schema.feature:
        wanted = SCHEMA_TYPES.get(feature.type)
        if wanted is None:
            return False
        index = arrow_schema.get_field_index(feature.name)
        if index >= 0 and arrow_schema.field(index).type not in (wanted, pa.null()):
            return False
    return True


def project(batch: pa.RecordBatch, schema: schema_pb2.Schema) -> pa.RecordBatch:
    """`batch` as the decoder decodes its records with `schema` (`projectable` first):
    the schema's features in its order, a feature absent or kindless being null."""
    columns = []
    for feature in schema.feature:
        wanted = SCHEMA_TYPES[feature.type]
        index = batch.schema.get_field_index(feature.name)
        column = batch.column(index) if index >= 0 else None
        columns.append(column if column is not None and column.type == wanted
                       else pa.nulls(batch.num_rows, wanted))
    return pa.RecordBatch.from_arrays(columns, [feature.name for feature in schema.feature])


def rebatched(batches: Iterable[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """`batches`' rows in batches of `batch_size` rows (the last may hold fewer), as a
    reader that batches the records themselves gives them."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            taken = batch.slice(0, batch_size - held)
            pending.append(taken)
            held += taken.num_rows
            batch = batch.slice(taken.num_rows)
            if held == batch_size:
                yield _joined(pending)
                pending, held = [], 0
    if held:
        yield _joined(pending)


def _joined(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    return pieces[0] if len(pieces) == 1 else table_util.MergeRecordBatches(pieces)


def read(record_files: list[str], schema: Optional[schema_pb2.Schema], batch_size: int
         ) -> Optional[Iterator[pa.RecordBatch]]:
    """The records' decoded batches from their copy, as `example_batches.read` decodes
    them, or None where the copy cannot give them (not vouched for, or not projectable
    on `schema`): the caller then decodes the records."""
    copies = vouched_copies(record_files)
    if copies is None:
        return None
    if not copies:  # no rows at all
        return iter(())
    first = _open(copies[0])  # every copy has its schema: ExampleGen types all batches alike
    if schema is not None and not projectable(first.schema, schema):
        return None
    batches = _file_batches(first, copies[1:])
    if schema is not None:
        batches = (project(batch, schema) for batch in batches)
    return rebatched(batches, batch_size)
