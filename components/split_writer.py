"""Gzipped TFRecord files of several splits, written by one or more threads.

Compressing is most of writing Examples, and TensorFlow's record writer compresses with the
GIL released; so with more than one thread, each thread owns one shard file per split and
takes the next chunk of records whichever split it belongs to, while the caller goes on
producing rows on another core. The files are named as TFX's ExampleGen names its shards
(`data_tfrecord-00000-of-00002.gz`); readers take every file in a split's folder, and TFX
does not promise an order of records within a split, so none is kept across shards.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Optional, Sequence

import tensorflow as tf
from tfx.components.example_gen import write_split
from tfx.dsl.io import fileio

# Chunks waiting per thread: enough to keep the threads busy, few enough that memory holds
# a handful of batches, not the data.
_CHUNKS_PER_THREAD = 1


def shard_path(folder: str, shard: int, shards: int) -> str:
    return os.path.join(folder, f"{write_split.DEFAULT_TF_RECORD_FILE_NAME}"
                                f"-{shard:05d}-of-{shards:05d}.gz")


class SplitWriter:
    """Writes records of `len(folders)` splits, split `i` into `folders[i]`, in `shards` files
    each (one per thread). Use as a context manager: leaving it waits for the threads and
    closes the files; an error in a thread is raised there, or at the next `write`."""

    def __init__(self, folders: Sequence[str], shards: int = 1) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, not {shards}")
        for folder in folders:
            fileio.makedirs(folder)
        self._writers = [[tf.io.TFRecordWriter(shard_path(folder, shard, shards),
                                               options="GZIP") for folder in folders]
                         for shard in range(shards)]
        self._error: Optional[BaseException] = None
        self._chunks: queue.Queue = queue.Queue(maxsize=_CHUNKS_PER_THREAD * shards)
        self._threads = [threading.Thread(target=self._drain, args=(writers,), daemon=True,
                                          name=f"split-writer-{shard}")
                         for shard, writers in enumerate(self._writers)] if shards > 1 else []
        for thread in self._threads:
            thread.start()

    def write(self, split: int, records: Sequence[bytes]) -> None:
        """Queues (or, with one shard, writes) `records` of split number `split`.

        Raises:
            BaseException: the first error a writer thread hit (re-raised here, so a
                failed write stops the producer instead of being lost).
        """
        self._raise_if_failed()
        if not records:
            return
        if not self._threads:
            _write_all(self._writers[0][split], records)
            return
        self._chunks.put((split, records))

    def _drain(self, writers: list[tf.io.TFRecordWriter]) -> None:
        while True:
            chunk = self._chunks.get()
            if chunk is None:
                return
            if self._error is None:
                try:
                    split, records = chunk
                    _write_all(writers[split], records)
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
        for writers in self._writers:
            for writer in writers:
                writer.close()
        self._raise_if_failed()

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_all(writer: tf.io.TFRecordWriter, records: Sequence[bytes]) -> None:
    for record in records:
        writer.write(record)
