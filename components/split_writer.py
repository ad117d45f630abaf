"""Gzipped TFRecord files of several splits, written by one or more threads.

Compressing is most of writing Examples, and TensorFlow's record writer compresses with the
GIL released; so with more than one thread, each thread owns one shard file per split and
takes the next chunk of records whichever split it belongs to, while the caller goes on
producing rows on another core. The files are named as TFX's ExampleGen names its shards
(`data_tfrecord-00000-of-00002.gz`); readers take every file in a split's folder, and TFX
does not promise an order of records within a split, so none is kept across shards.

Records are compressed at gzip's fastest level (`COMPRESSION_LEVEL`), not zlib's default
6: at 1.5 M taxi rows ExampleGen took 11.2-11.5 s instead of 13.8-14.3 s, for files about
a fifth larger, inflated as fast. A writer thread takes Python's lock for every record it
writes, so while the caller runs Python its writers wait their turn; the less each spends
compressing, the less they hold the caller up (bench/scale; docs/performance.md).
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Optional, Sequence

import pyarrow as pa
import tensorflow as tf
from tfx.components.example_gen import write_split
from tfx.dsl.io import fileio

from components import decoded_copy

COMPRESSION_LEVEL = 1
# Chunks waiting per thread: enough to keep the threads busy, few enough that memory holds
# a handful of batches, not the data.
_CHUNKS_PER_THREAD = 1


def shard_path(folder: str, shard: int, shards: int) -> str:
    return os.path.join(folder, f"{write_split.DEFAULT_TF_RECORD_FILE_NAME}"
                                f"-{shard:05d}-of-{shards:05d}.gz")


class SplitWriter:
    """Writes records of `len(folders)` splits, split `i` into `folders[i]`, in `shards` files
    each (one per thread). Use as a context manager: leaving it waits for the threads and
    closes the files; an error in a thread is raised there, or at the next `write`.

    With `keep_decoded`, every `write` also hands the records' decoded rows, which go into
    the split's decoded copy (`decoded_copy`), file for file and in the records' order;
    the copies' manifests are written once every file is closed, and only if all went well.
    """

    def __init__(self, folders: Sequence[str], shards: int = 1,
                 keep_decoded: bool = False) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, not {shards}")
        for folder in folders:
            fileio.makedirs(folder)
        self._keep_decoded = keep_decoded
        self._files = [[_ShardFile(shard_path(folder, shard, shards), keep_decoded)
                        for folder in folders] for shard in range(shards)]
        self._error: Optional[BaseException] = None
        self._chunks: queue.Queue = queue.Queue(maxsize=_CHUNKS_PER_THREAD * shards)
        self._threads = [threading.Thread(target=self._drain, args=(files,), daemon=True,
                                          name=f"split-writer-{shard}")
                         for shard, files in enumerate(self._files)] if shards > 1 else []
        for thread in self._threads:
            thread.start()

    def write(self, split: int, records: Sequence[bytes],
              decoded: Optional[pa.RecordBatch] = None) -> None:
        """Queues (or, with one shard, writes) `records` of split number `split`, and with
        a decoded copy their rows `decoded`.

        Raises:
            ValueError: a decoded copy is written and `decoded` is missing.
            BaseException: the first error a writer thread hit (re-raised here, so a
                failed write stops the producer instead of being lost).
        """
        self._raise_if_failed()
        if not records:
            return
        if self._keep_decoded and decoded is None:
            raise ValueError("this writer keeps a decoded copy: every write needs the rows")
        if not self._threads:
            self._files[0][split].write(records, decoded)
            return
        self._chunks.put((split, records, decoded))

    def _drain(self, files: list["_ShardFile"]) -> None:
        while True:
            chunk = self._chunks.get()
            if chunk is None:
                return
            if self._error is None:
                try:
                    split, records, decoded = chunk
                    files[split].write(records, decoded)
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller
                    self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Waits for the threads to write what is queued and closes every file.

        Raises:
            BaseException: the first error a writer thread hit, after the files are closed.
        """
        for _ in self._threads:
            self._chunks.put(None)
        for thread in self._threads:
            thread.join()
        for files in self._files:
            for file in files:
                file.close()
        self._raise_if_failed()
        if self._keep_decoded:
            decoded_copy.write_manifest(file.copy for files in self._files for file in files)

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _ShardFile:
    """One shard file of one split, and its decoded copy if one is kept."""

    def __init__(self, path: str, keep_decoded: bool) -> None:
        self.records = tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(
            compression_type="GZIP", compression_level=COMPRESSION_LEVEL))
        self.copy = decoded_copy.CopyWriter(path) if keep_decoded else None

    def write(self, records: Sequence[bytes], decoded: Optional[pa.RecordBatch]) -> None:
        for record in records:
            self.records.write(record)
        if self.copy is not None:
            self.copy.write(decoded)

    def close(self) -> None:
        self.records.close()
        if self.copy is not None:
            self.copy.close()
