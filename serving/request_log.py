"""A sample of the requests a server answers, kept as TFRecord files of `tf.Example`s.

What `mlops skew` compares with the training data: the features a model was asked about,
in the form the pipeline's own data has (one `tf.Example` per row, a missing value an
empty list), so TFDV reads requests and training data alike.

- Sampling is per request (`sample_rate`), decided on the request path at the cost of a
  random draw; everything else happens on one background thread, so a logged request
  waits for nothing but a queue append.
- Bounded: files rotate at `max_file_bytes` or after `rotate_seconds` (so a quiet server's
  samples become readable too), and only the newest `max_files` are kept;
  when the writer falls behind (more than `max_queued` requests waiting) new samples are
  dropped and counted, never the server's answers delayed.
- A clean stop (`close`) writes everything queued and closes the file: nothing sampled is
  lost. Files are written under a hidden name and renamed when complete, so a reader
  never sees half a file.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from typing import BinaryIO, Mapping, Optional, Sequence, Union

import numpy as np

from serving import tfrecord

log = logging.getLogger(__name__)

SUFFIX = ".tfrecord"
# A request's key (X-Request-Key, x-request-key), kept with its rows so that labels known
# later can be joined to them (`mlops span-from-requests`).
REQUEST_KEY_FEATURE = "request_key"
_STOP = object()
_BATCH = 512  # queued samples the writer takes at once
# How often the writer takes what was queued. A round's work (merging, encoding) is
# mostly per round, not per sample, and each round takes the GIL from the event loop
# many times: ten rounds a second cost the REST port a tenth of its requests/s at 32
# connections, one a second nothing measurable (bench/serving_options).
_POLL_SECONDS = 1.0
Rows = Union[Mapping[str, np.ndarray], Sequence[bytes]]  # columns, or serialized examples


def examples_from_columns(columns: Mapping[str, np.ndarray]) -> list[bytes]:
    """One serialized tf.Example per row of `[batch]` columns (a predict request's inputs):
    floats as float_list, integers as int64_list, text as bytes_list, a missing value (NaN,
    "") an empty list, as the pipeline's CSV ingestion writes an empty cell; encoded by
    tfx_bsl's C++ encoder."""
    import pyarrow as pa
    from tfx_bsl.coders import example_coder

    names, lists = [], []
    for name, values in columns.items():
        if values.ndim != 1:
            continue  # not a per-row scalar feature: not something TFDV compares
        if values.dtype.kind == "f":
            present = ~np.isnan(values)
            kept = pa.array(values[present].astype(np.float32))
        elif values.dtype.kind in "iu":
            present = np.ones(len(values), dtype=bool)
            kept = pa.array(values.astype(np.int64))
        else:
            texts = [v if isinstance(v, bytes) else str(v).encode() for v in values]
            present = np.array([bool(t) for t in texts], dtype=bool)
            kept = pa.array([t for t in texts if t], pa.binary())
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(present, out=offsets[1:])
        names.append(name)
        lists.append(pa.ListArray.from_arrays(pa.array(offsets), kept))
    if not names:
        return []
    return example_coder.RecordBatchToExamplesEncoder().encode(
        pa.RecordBatch.from_arrays(lists, names))


def _merged(items: list) -> list:
    """Queued samples with the same columns and key merged into one batch of columns, so
    the encoder runs once per batch rather than once per (often one-row) request."""
    merged: list = []
    groups: dict = {}
    for version, rows, key in items:
        if not isinstance(rows, Mapping):
            merged.append((version, rows, key))
            continue
        signature = (version, key, tuple((n, v.dtype.str, v.ndim) for n, v in rows.items()))
        groups.setdefault(signature, []).append(rows)
    for (version, key, _), batches in groups.items():
        columns = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
        merged.append((version, columns, key))
    return merged


def _with_key(record: bytes, key: str) -> bytes:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(record)
    example.features.feature[REQUEST_KEY_FEATURE].bytes_list.value[:] = [key.encode()]
    return example.SerializeToString()


class RequestLog:
    """Samples requests of one model into `<directory>/<model>/requests-*.tfrecord`.

    A file's name holds its time, then the writing process's id, so the REST workers of
    one server (`serving.workers`) log into the same folder without clashing.
    """

    def __init__(self, directory: str, model_name: str, sample_rate: float,
                 max_file_bytes: int = 64 << 20, max_files: int = 20,
                 rotate_seconds: float = 300.0, max_queued: int = 10_000,
                 seed: Optional[int] = None) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], not {sample_rate}")
        self.folder = os.path.join(directory, model_name)
        self.sample_rate = sample_rate
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.rotate_seconds = rotate_seconds
        self._opened = 0.0
        self.dropped = 0
        self.written = 0
        self._random = random.Random(seed)
        self._queue: "queue.Queue" = queue.Queue(maxsize=max_queued)
        self._file: Optional[BinaryIO] = None  # the hidden file being written
        self._partial: Optional[str] = None
        self._framed: list[bytes] = []  # records framed since the last write
        self._bytes = 0
        os.makedirs(self.folder, exist_ok=True)
        self._wake = threading.Event()  # set by close: the writer finishes at once
        self._thread = threading.Thread(target=self._drain, name="request-log", daemon=True)
        self._thread.start()

    def sample(self, version: int, rows: Rows, key: Optional[str] = None) -> bool:
        """Queues the request's rows (and its key) if it is sampled; True when it was."""
        if self._random.random() >= self.sample_rate:
            return False
        try:
            self._queue.put_nowait((version, rows, key))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("Request log behind: %d sampled requests dropped", self.dropped)
            return False
        return True

    def close(self) -> None:
        """Writes what is queued, closes the file; the log is complete on disk after it."""
        self._wake.set()  # the writer goes on at once, not a poll interval later
        self._queue.put(_STOP)
        self._thread.join()

    # --- the writer thread -----------------------------------------------------------

    def _drain(self) -> None:
        """Every `_POLL_SECONDS`, writes what was queued meanwhile. Polling, not a blocking
        get: a writer woken by each sample would take the GIL from the request path
        hundreds of times a second."""
        stopping = False
        while True:
            items = []
            while len(items) < _BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = stopping or any(item is _STOP for item in items)
            for version, rows, key in _merged([i for i in items if i is not _STOP]):
                try:
                    records = (examples_from_columns(rows) if isinstance(rows, Mapping)
                               else list(rows))
                    for record in records:
                        self._write(_with_key(record, key) if key else record)
                except Exception:  # a malformed request must not stop the log
                    log.exception("Request log: a sample of version %s was not written",
                                  version)
            self._flush()  # what this pass framed, in one write
            if stopping and self._queue.empty():
                self._finish_file()
                return
            if len(items) < _BATCH:
                self._wake.wait(_POLL_SECONDS)
                if self._file is not None and \
                        time.monotonic() - self._opened >= self.rotate_seconds:
                    self._finish_file()

    def _write(self, record: bytes) -> None:
        """Frames a record into the open file's buffer (`_flush` writes it)."""
        if self._file is None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            self._partial = os.path.join(
                self.folder, f".requests-{stamp}-{os.getpid()}-"
                             f"{time.monotonic_ns() % 10**9:09d}{SUFFIX}")
            self._file = open(self._partial, "wb")
            self._bytes = 0
            self._opened = time.monotonic()
        framed = tfrecord.frame(record)
        self._framed.append(framed)
        self._bytes += len(framed)
        self.written += 1
        if self._bytes >= self.max_file_bytes or \
                time.monotonic() - self._opened >= self.rotate_seconds:
            self._finish_file()

    def _flush(self) -> None:
        if self._framed:
            self._file.write(b"".join(self._framed))
            self._framed = []

    def _finish_file(self) -> None:
        if self._file is None:
            return
        self._flush()
        self._file.close()
        final = os.path.join(self.folder, os.path.basename(self._partial).lstrip("."))
        os.replace(self._partial, final)
        self._file = self._partial = None
        files = sorted(name for name in os.listdir(self.folder)
                       if name.startswith("requests-") and name.endswith(SUFFIX))
        for name in files[:-self.max_files]:  # another process of the server may have
            with contextlib.suppress(FileNotFoundError):  # removed it first
                os.remove(os.path.join(self.folder, name))


def rows_of(signature, inputs: Mapping[str, np.ndarray]) -> Rows:
    """A call's inputs as the log keeps them: serialized tf.Examples as they are (classify,
    regress and other example signatures), else the columns of a feature dict."""
    if len(inputs) == 1:
        (name, values), = inputs.items()
        spec = signature.inputs.get(name)
        if spec is not None and values.dtype == object and spec.dtype.name == "string" \
                and signature.method_name != "tensorflow/serving/predict":
            return [bytes(value) for value in values]
    return inputs


class RequestLogs:
    """One `RequestLog` per model, made on its first sampled request; closed together."""

    def __init__(self, directory: str, sample_rate: float, **options) -> None:
        self.directory = directory
        self.sample_rate = sample_rate
        self._options = options
        self._logs: dict[str, RequestLog] = {}
        self._lock = threading.Lock()

    def sample(self, servable, signature, inputs: Mapping[str, np.ndarray],
               key: Optional[str] = None) -> bool:
        """Queues a model call's inputs in its model's log if sampled; True when it was."""
        with self._lock:
            model_log = self._logs.get(servable.name)
            if model_log is None:
                model_log = self._logs[servable.name] = RequestLog(
                    self.directory, servable.name, self.sample_rate, **self._options)
        return model_log.sample(servable.version, rows_of(signature, inputs), key)

    def close(self) -> None:
        """Writes and closes every model's log (server shutdown), so each is complete on disk."""
        with self._lock:
            logs, self._logs = list(self._logs.values()), {}
        for model_log in logs:
            model_log.close()
