"""Server-side batching: concurrent requests to one signature merged into one model call.

Like TF Serving's batching session: requests wait in a queue per (model version,
signature, input shapes) until ``max_batch_size`` rows are queued or the oldest has waited
``batch_timeout_micros``; at most ``num_batch_threads`` batches run at once, so under load
the queue fills while the model is busy and batches grow on their own. Rows are padded up
to the next of ``allowed_batch_sizes`` when those are set. A request larger than
``max_batch_size`` is refused (as TF Serving does) unless large-batch splitting is on, in
which case it runs on its own.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from concurrent.futures import Executor
from typing import Callable, Hashable, Mapping, Optional

import numpy as np

from serving.config_files import BatchingParameters
from serving.errors import Code, ServingError, invalid_argument

log = logging.getLogger("serving.batching")

RunFn = Callable[[object, str, Mapping[str, np.ndarray]], dict]
# (servable, the batch's outputs without padding, [(measurement, row offset, rows)])
AnsweredFn = Callable[[object, dict, list], None]


@dataclasses.dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float
    measurement: object = None  # the caller's, handed back with the batch (`on_answered`)


@dataclasses.dataclass
class _Queue:
    tasks: list = dataclasses.field(default_factory=list)
    rows: int = 0
    # While the worker waits for a batch to fill: resolved when it is full or at its
    # deadline (one future and one timer per batch, not a wake-up per request).
    filled: asyncio.Future | None = None
    worker: asyncio.Task | None = None


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _rows(inputs: Mapping[str, np.ndarray]) -> int | None:
    sizes = {array.shape[0] if array.ndim else None for array in inputs.values()}
    return sizes.pop() if len(sizes) == 1 else None


class Batcher:
    """Merges concurrent calls to the same signature into batches (TF Serving's rules).

    `run(servable, signature_name, inputs)` is the model call (from a worker thread of
    `executor`); one Batcher serves every model of a server. `on_dispatch(servable)` is
    told, on the event loop, each time a batch leaves its queue for the model (the canary
    split ends its run of requests to that version there: `serving.traffic`).
    `on_answered(servable, outputs, measured)` is told, on the event loop, of each batch
    that answered requests queued with a `measurement`, once for all of them (a rollout
    measures its requests so: `serving.rollout.window.Monitor.answered_batch`).
    """

    def __init__(self, params: BatchingParameters, run: RunFn, executor: Executor,
                 on_dispatch: Optional[Callable[[object], None]] = None,
                 on_answered: Optional[AnsweredFn] = None) -> None:
        self.params = params
        self._run = run
        self._executor = executor
        self._on_dispatch = on_dispatch
        self._on_answered = on_answered
        self._queues: dict[Hashable, _Queue] = {}
        self._slots: asyncio.Semaphore | None = None
        # asyncio keeps only weak references to tasks: these keep them alive until done
        self._tasks: set[asyncio.Task] = set()
        self.batches_run = 0  # for metrics and benchmarks: how many model calls were made

    def _start(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, servable, signature_name: str, inputs: Mapping[str, np.ndarray],
                  measurement: object = None) -> dict[str, np.ndarray]:
        """The signature's outputs for `inputs`, this request's rows only.

        The request waits in its queue (same version, signature, dtypes and inner shapes)
        until a batch of it runs; rows are padded to `allowed_batch_sizes`, and outputs
        sliced back per request. A `measurement` is handed to `on_answered` with the
        batch that answers the request; a request that runs alone (no rows to batch on,
        or more than a batch with splitting on) is not reported: its caller measures it.

        Raises:
            ServingError: INVALID_ARGUMENT for more rows than `max_batch_size` (unless
                large-batch splitting is on: then it runs alone), UNAVAILABLE when the
                queue holds `max_enqueued_batches` full batches already, INTERNAL when an
                output has no batch dimension; the model call's own errors.
        """
        loop = asyncio.get_running_loop()
        rows = _rows(inputs)
        if rows is None or rows == 0:  # nothing to batch on: run as sent
            return await loop.run_in_executor(self._executor, self._run, servable,
                                              signature_name, inputs)
        if rows > self.params.max_batch_size:
            if not self.params.enable_large_batch_splitting:
                raise invalid_argument(f"Task size {rows} is larger than maximum input batch "
                                       f"size {self.params.max_batch_size}")
            return await loop.run_in_executor(self._executor, self._run, servable,
                                              signature_name, inputs)
        key = (id(servable), signature_name,
               tuple([(name, array.dtype, array.shape[1:])
                      for name, array in sorted(inputs.items())]))
        queue = self._queues.setdefault(key, _Queue())
        capacity = self.params.max_enqueued_batches * self.params.max_batch_size
        if queue.rows + rows > capacity:
            raise ServingError(Code.UNAVAILABLE, "The batch scheduling queue to which this "
                                                 "task was submitted is full")
        task = _Task(inputs, rows, loop.create_future(), time.monotonic(),
                     measurement if self._on_answered is not None else None)
        queue.tasks.append(task)
        queue.rows += rows
        if queue.worker is None:
            queue.worker = self._start(self._drain(key, queue, servable, signature_name))
        elif queue.filled is not None and queue.rows >= self.params.max_batch_size:
            _resolve(queue.filled)
        return await task.future

    async def _drain(self, key, queue: _Queue, servable, signature_name: str) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.params.num_batch_threads)
        timeout = self.params.batch_timeout_micros / 1e6
        loop = asyncio.get_running_loop()
        try:
            while queue.tasks:
                remaining = queue.tasks[0].enqueued + timeout - time.monotonic()
                if queue.rows < self.params.max_batch_size and remaining > 0:
                    queue.filled = loop.create_future()
                    timer = loop.call_later(remaining, _resolve, queue.filled)
                    try:
                        await queue.filled
                    finally:
                        timer.cancel()
                        queue.filled = None
                await self._slots.acquire()
                batch, size = [], 0
                while queue.tasks and size + queue.tasks[0].rows <= self.params.max_batch_size:
                    task = queue.tasks.pop(0)
                    batch.append(task)
                    size += task.rows
                queue.rows -= size
                if self._on_dispatch is not None:
                    self._on_dispatch(servable)
                self._start(self._execute(servable, signature_name, batch, size))
        finally:
            queue.worker = None
            if not queue.tasks:
                self._queues.pop(key, None)

    def _padded_size(self, size: int) -> int:
        for allowed in self.params.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    async def _execute(self, servable, signature_name: str, batch: list, size: int) -> None:
        try:
            target = self._padded_size(size)
            merged = {}
            for name in batch[0].inputs:
                parts = [task.inputs[name] for task in batch]
                if target > size:
                    parts.append(np.repeat(parts[0][:1], target - size, axis=0))
                merged[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self._run, servable,
                                                 signature_name, merged)
            self.batches_run += 1
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != target:
                    raise ServingError(Code.INTERNAL, f"Batched output {name} has no batch "
                                       f"dimension of {target} rows")
            offset, measured = 0, []
            for task in batch:
                if not task.future.done():
                    task.future.set_result({name: array[offset:offset + task.rows]
                                            for name, array in outputs.items()})
                    if task.measurement is not None:
                        measured.append((task.measurement, offset, task.rows))
                offset += task.rows
        except Exception as err:  # every waiting request learns why
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(err)
            return
        finally:
            self._slots.release()
        if measured:  # the answers are set: a failing report cannot fail a request
            try:
                self._on_answered(servable, {name: array[:size] if target > size else array
                                             for name, array in outputs.items()}, measured)
            except Exception:
                log.exception("reporting a batch's measured requests failed")
