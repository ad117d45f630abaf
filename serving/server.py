"""The embedded model server: repository, poller, data plane, REST and gRPC on one loop.

Start-up follows ``tensorflow_model_server``: read the model config (``--model_config_file``
or ``--model_name`` + ``--model_base_path``), load the aspired versions, then open the
gRPC and REST ports. A background thread polls the base paths every
``--file_system_poll_wait_seconds`` (0: once, at start) and re-reads the config file every
``--model_config_file_poll_wait_seconds`` (0: never); a config that fails to parse is
reported and the running one kept. Unlike tensorflow_model_server, between polls it also
glances at the base paths' listings ten times a second, so a pushed version starts loading
at once instead of at the next poll. Beside a ``--model_config_file`` it also reads the canary
traffic split (``traffic_split.json``, ``serving.traffic``), at start and on the same poll.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import grpc

from serving import config_files, tls, traffic
from serving.batching import Batcher
from serving.config_files import BatchingParameters, ModelServerConfig
from serving.dataplane import DataPlane
from serving.errors import ServingError
from serving.labels import LabelFolder
from serving.metrics import Metrics
from serving.options import ServerOptions
from serving.protocol import grpc_service
from serving.protocol.http import Limits
from serving.protocol.rest import RestApi, make_http_server
from serving.repository import ModelRepository
from serving.request_log import RequestLogs
from serving.rollout.controller import RolloutController
from serving.rollout.window import Monitor
from serving.workers import WorkerPool, ensure_port_free

log = logging.getLogger("serving.server")

_GLANCE_S = 0.1  # how often the base paths' listings are checked between polls
_COLLECT_DELAY_S = 1.0  # from an unload to the collection of what it freed
_ROLLOUT_TICK_S = 0.5  # how often the rollout loop looks for a push or an ended interval
# Container objects allocated (net of those freed) before the cyclic collector runs a
# young collection; CPython's default is 700. Under load the requests in flight alone
# hold more than 700, so at the default a collection ran every twenty-odd requests,
# found nothing to free, and cost the event loop about 4 µs per request
# (docs/performance.md, "The cyclic collector under load"). 20,000 covers the objects
# of about 600 requests in flight; cyclic garbage still triggers a collection as it
# accumulates.
GC_YOUNG_THRESHOLD = 20_000
_gc_lock = threading.Lock()
_gc_raised_by: list["ModelServer"] = []  # servers running in this process
_gc_thresholds_before: tuple[int, ...] = ()


def _freeze_heap() -> None:
    """Moves everything alive now out of the cyclic GC's reach.

    TensorFlow and a loaded model leave hundreds of thousands of long-lived objects; every
    full collection scanned them all, pausing every request. They live as long as
    the server or the model, so they are frozen after start-up and after each load.
    """
    gc.collect()
    gc.freeze()


def _raise_gc_threshold(server: "ModelServer") -> None:
    """Raises the young collection's threshold to GC_YOUNG_THRESHOLD while `server` runs."""
    global _gc_thresholds_before
    with _gc_lock:
        if not _gc_raised_by:
            _gc_thresholds_before = gc.get_threshold()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *_gc_thresholds_before[1:])
        _gc_raised_by.append(server)


def _restore_gc_threshold(server: "ModelServer") -> None:
    """Gives the process its own thresholds back once no server runs in it (servers
    embedded in another program, and tests, start and stop several)."""
    with _gc_lock:
        if server in _gc_raised_by:
            _gc_raised_by.remove(server)
            if not _gc_raised_by:
                gc.set_threshold(*_gc_thresholds_before)


def _freeze_loaded() -> None:
    """After a load: freeze without collecting, so the new version answers at once.

    A full collection here (holding the GIL) would delay the new version's first
    answers; what garbage the load left is frozen with it and collected after the next
    unload, when the heap is unfrozen anyway.
    """
    gc.freeze()


def load_servable(warmup: bool, threads: tuple[int, int] = (0, 0)):
    """The repository's loader: a Servable with `threads` (intra-op, inter-op; 0 = auto),
    warmed unless warm-up is off."""

    def load(name: str, version: int, path: str):
        from serving.servable import Servable
        from serving.warmup import warm_up

        servable = Servable(name, version, path, threads)
        if warmup:
            warm_up(servable)
        return servable

    return load


class ModelServer:
    """The embedded tensorflow_model_server: a model repository, its poller, the data
    plane, and the gRPC and REST ports, configured by TF Serving's own flags.

    With ``--rest_api_workers`` above 1 it is the primary of that many processes answering
    the REST port (`serving.workers`); ``worker`` makes it one of the others: REST on the
    primary's port, gRPC on a loopback port of its own for the primary's ReloadConfig.

    Raises (from the constructor): ServingError INVALID_ARGUMENT for a batching,
    monitoring, models.config or SSL config file that does not parse or holds impossible
    values (an unreadable, empty or mismatched key or certificate); FAILED_PRECONDITION
    for REST workers in a process whose metrics cannot be shared (not started by
    ``python -m serving``).
    """

    def __init__(self, options: ServerOptions, worker: bool = False) -> None:
        self.options = options
        self.worker = worker
        self.shares_port = worker or options.rest_api_workers > 1  # SO_REUSEPORT
        self.metrics = Metrics(self._version_states, shared=self.shares_port)
        self.batching = (BatchingParameters.from_file(options.batching_parameters_file)
                         if options.enable_batching else None)
        self.metrics_path = config_files.prometheus_path(options.monitoring_config_file)
        self.config = options.model_server_config()
        self.split_file = (traffic.split_path(options.model_config_file)
                           if options.model_config_file else None)
        self.router = traffic.Router(
            traffic.read_splits(self.split_file) if self.split_file else None,
            run_length=self.batching.max_batch_size if self.batching else 1)
        self.grpc_tls = (tls.read(options.ssl_config_file, "ssl_config_file")
                         if options.ssl_config_file else None)
        self.rest_tls = (tls.read(options.rest_ssl_config_file, "rest_ssl_config_file")
                         if options.rest_ssl_config_file else None)
        self.repository = ModelRepository(load_servable(options.enable_model_warmup,
                                                        options.session_threads()),
                                          on_loaded=_freeze_loaded,
                                          on_unload=self._collect_later)
        self.executor = ThreadPoolExecutor(options.num_model_threads,
                                           thread_name_prefix="model")
        self.rollout_policy = options.rollout_policy()
        self.monitor = Monitor() if self.rollout_policy else None
        batcher = (Batcher(self.batching, self._run_batch, self.executor,
                           on_dispatch=self.router.batch_dispatched,
                           on_answered=self.monitor.answered_batch if self.monitor else None)
                   if self.batching else None)
        self.request_logs = (RequestLogs(options.request_log_dir,
                                         options.request_log_sample_rate)
                             if options.request_log_sample_rate else None)
        self.rollout: Optional[RolloutController] = None  # made once the first load is done
        self.labels = LabelFolder(options.request_log_dir) if options.request_log_dir else None
        self.dataplane = DataPlane(self.repository, self.executor, batcher, self.router,
                                   self.request_logs, self.monitor, self.labels)
        self.rest_api = RestApi(self.dataplane, self.metrics,
                                options.rest_api_timeout_in_ms / 1000
                                if options.rest_api_timeout_in_ms > 0 else None)
        self.grpc_port: Optional[int] = None
        self.rest_port: Optional[int] = None
        self._stop = threading.Event()
        self._collect_at: Optional[float] = None  # when to collect unloaded models
        self._poller: Optional[threading.Thread] = None
        self._http = None
        self._grpc = None
        self.workers: Optional[WorkerPool] = None  # the other REST processes (the primary's)

    def _run_batch(self, servable, signature_name: str, inputs) -> dict:
        rows = next(iter(inputs.values())).shape[0]
        self.metrics.observe_batch(servable.name, rows)
        return servable.run(signature_name, inputs)

    def _collect_later(self) -> None:
        """After an unload, the old model's frozen cycles are collected a second later: a
        full collection holds the GIL, and right after a swap is when the new version's
        first requests arrive."""
        self._collect_at = time.monotonic() + _COLLECT_DELAY_S

    def _collect_unloaded(self) -> None:
        if self._collect_at is not None:
            self._collect_at = None
            gc.unfreeze()
            _freeze_heap()

    def _version_states(self):
        for name, view in self.repository.views().items():
            for status in view.statuses:
                yield name, status.version, status.state.name

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads what the config asks for (warmed), then listens on both ports.

        Raises:
            OSError: a port cannot be listened on (in use, or not allowed).
        """
        loop = asyncio.get_running_loop()
        self.repository.apply_config(self.config)
        await loop.run_in_executor(None, self.repository.poll)
        _freeze_heap()
        _raise_gc_threshold(self)
        if self.rollout_policy is not None:
            self.rollout = RolloutController(self.rollout_policy, self.options.model_config_file,
                                             self.monitor, self.repository, self._apply_files,
                                             labels=self.labels)
        self._poller = threading.Thread(target=self._poll_forever, name="poller", daemon=True)
        self._poller.start()

        self._grpc = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", self.options.max_request_bytes),
            ("grpc.max_send_message_length", self.options.max_request_bytes)])
        grpc_service.add_services(self._grpc, self.dataplane, self.reload_config, self.metrics)
        address = "127.0.0.1:0" if self.worker else f"{self.options.host}:{self.options.port}"
        self.grpc_port = (self._grpc.add_secure_port(address,
                                                     tls.grpc_credentials(self.grpc_tls))
                          if self.grpc_tls and not self.worker
                          else self._grpc.add_insecure_port(address))
        if not self.grpc_port:
            raise OSError(f"cannot listen for gRPC on {self.options.host}:{self.options.port}")
        await self._grpc.start()

        self._http = make_http_server(self.rest_api, self.metrics_path, Limits(
            max_body_bytes=self.options.max_request_bytes,
            read_timeout=self.options.rest_read_timeout_seconds,
            idle_timeout=self.options.rest_idle_timeout_seconds,
            max_connections=self.options.rest_max_connections))
        primary_of_workers = self.shares_port and not self.worker
        if primary_of_workers and self.options.rest_api_port:
            ensure_port_free(self.options.host, self.options.rest_api_port)
        self.rest_port = await self._http.listen(
            self.options.host, self.options.rest_api_port,
            tls.rest_context(self.rest_tls) if self.rest_tls else None,
            reuse_port=self.shares_port)
        if self.worker:
            log.info("Serving REST on %s:%d", self.options.host, self.rest_port)
            return
        if primary_of_workers:
            self.workers = WorkerPool(self.options, self.rest_port,
                                      verbose=logging.getLogger().isEnabledFor(logging.DEBUG))
            await self.workers.start()
        log.info("Serving gRPC%s on %s:%d and REST%s on %s:%d%s",
                 " (TLS)" if self.grpc_tls else "", self.options.host, self.grpc_port,
                 " (HTTPS)" if self.rest_tls else "", self.options.host, self.rest_port,
                 f" ({self.options.rest_api_workers} processes)" if self.workers else "")

    async def stop(self) -> None:
        """Stops listening, lets in-flight calls finish (1 s grace), closes the request
        log, unloads every model."""
        self._stop.set()
        if self._http is not None:
            self._http.stop()
        if self.workers is not None:
            await self.workers.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=1)
        await self.dataplane.shadow_calls_done()
        if self._poller is not None:
            self._poller.join(timeout=30)
        if self.rollout is not None:
            self.rollout.stop()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.request_logs is not None:  # everything sampled is on disk after a clean stop
            self.request_logs.close()
        self.repository.apply_config(ModelServerConfig())
        _restore_gc_threshold(self)

    async def reload_config(self, config: ModelServerConfig) -> None:
        """ModelService.HandleReloadConfigRequest: validate, apply, load what it asks for.

        With REST workers, the primary applies it first, then each worker.

        Raises:
            ServingError: INVALID_ARGUMENT for a config TF Serving would refuse; the
                running config is kept. INTERNAL when a REST worker did not apply it.
        """
        text = config_files.model_server_config_text(config)
        checked = config_files.parse_model_server_config(text, "ReloadConfigRequest")
        loop = asyncio.get_running_loop()
        self.config = checked
        self.repository.apply_config(checked)
        await loop.run_in_executor(None, self.repository.poll)
        await loop.run_in_executor(None, self._collect_unloaded)  # the poller may be off
        if self.workers is not None:
            await self.workers.reload_config(checked)

    def _poll_forever(self) -> None:
        """The poller thread: file-system polls, config re-reads, collections, on their clocks.

        Between polls, the base paths' listings are glanced at every ``_GLANCE_S`` (one
        directory listing each) and a poll runs as soon as one changed: a pushed version starts
        loading at once rather than up to a poll interval later. With polling off
        (``--file_system_poll_wait_seconds=0``) there is no glancing either. With
        ``--rollout``, the rollout loop ticks here too (``serving.rollout.controller``).
        """
        fs_wait = self.options.file_system_poll_wait_seconds
        config_wait = self.options.model_config_file_poll_wait_seconds
        polling = fs_wait > 0
        never = float("inf")
        next_fs = time.monotonic() + fs_wait if polling else never
        next_glance = time.monotonic() + _GLANCE_S if polling else never
        next_config = (time.monotonic() + config_wait
                       if config_wait > 0 and self.options.model_config_file else never)
        next_rollout = time.monotonic() if self.rollout is not None else never
        while not self._stop.is_set():
            collect_at = self._collect_at if self._collect_at is not None else never
            wake = min(next_fs, next_glance, next_config, collect_at, next_rollout)
            if wake == never:
                return
            if self._stop.wait(max(0.0, wake - time.monotonic())):
                return
            now = time.monotonic()
            if now >= collect_at:
                self._collect_unloaded()
            if now >= next_config:
                self._reread_config()
                next_config = now + config_wait
                next_fs = now  # apply a changed policy without waiting another interval
            if now >= next_glance:
                next_glance = now + _GLANCE_S
                if self.repository.listings_changed():
                    next_fs = now
            if now >= next_fs:
                try:
                    self.repository.poll()
                except Exception:  # keep polling: one bad pass must not stop the server
                    log.exception("polling the model directories failed")
                next_fs = time.monotonic() + fs_wait if polling else never
            if now >= next_rollout:
                self._tick_rollout()
                next_rollout = time.monotonic() + _ROLLOUT_TICK_S

    def _tick_rollout(self) -> None:
        try:
            self.rollout.tick()
        except ServingError as err:  # a models.config that does not parse: next tick
            log.error("Rollout: %s", err.message)
        except Exception:  # keep serving and polling whatever the loop hit
            log.exception("the rollout loop failed")

    def _apply_files(self) -> None:
        """The rollout's edits, applied now: models.config and split re-read, then a poll
        (which loads or unloads what the edit asks for, on this thread)."""
        self._reread_config()
        self.repository.poll()

    def _reread_config(self) -> None:
        try:
            config = config_files.read_model_server_config(self.options.model_config_file)
        except ServingError as err:
            log.error("Keeping the running model config: %s", err.message)
            return
        if config != self.config:
            log.info("Model config changed: applying %s", self.options.model_config_file)
            self.config = config
            self.repository.apply_config(config)
        self._reread_split()  # after models.config: a split never runs ahead of its labels

    def _reread_split(self) -> None:
        try:
            splits = traffic.read_splits(self.split_file)
        except ServingError as err:
            log.error("Keeping the running traffic split: %s", err.message)
            return
        if self.router.update(splits):
            log.info("Traffic split changed: %s", ", ".join(
                f"{name}: canary {split.canary_weight:g} %" for name, split in splits.items())
                or "none")


async def serve_forever(options: ServerOptions, worker: bool = False,
                        on_started: Optional[Callable[[ModelServer, Callable[[str], None]],
                                                      None]] = None) -> None:
    """Serves until SIGTERM or SIGINT, then stops cleanly (``ModelServer.stop``: calls in
    flight finish, the request log is written out). SIGTERM is how docker, Kubernetes and
    process managers ask a server to stop; left to its default, it killed the process with
    the request log's last file unfinished under its hidden name.

    ``on_started(server, stop)``, once the server listens: ``stop(reason)``, callable from
    any thread, stops it as a signal would (a REST worker's stdin closing).
    """
    server = ModelServer(options, worker=worker)
    await server.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop_on(reason: str) -> None:  # run by the loop, not in the signal's context
        if not stopping.is_set():
            log.info("%s: stopping (calls in flight finish, the request log is written out)",
                     reason)
        stopping.set()

    # A REST worker leaves Ctrl-C (SIGINT, sent to the terminal's whole process group) to
    # its primary, which stops it: stopping on its own, it could be taken for a crash.
    signals = (signal.SIGTERM,) if worker else (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop_on, signum.name)
    if on_started is not None:
        on_started(server, lambda reason: loop.call_soon_threadsafe(stop_on, reason))
    try:
        await stopping.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await server.stop()
    log.info("Stopped")


def run(options: ServerOptions, worker: bool = False,
        on_started: Optional[Callable[[ModelServer, Callable[[str], None]], None]] = None
        ) -> int:
    """`serve_forever` on the server's event loop, as a process's exit code: errors a user
    can fix are one line on stderr, not a traceback (2: a bad flag or file; 1: a port
    that cannot be listened on, or a REST worker that did not start)."""
    from serving import event_loop
    from serving.workers import WorkerFailed

    try:
        event_loop.run(serve_forever(options, worker=worker, on_started=on_started))
    except ServingError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot listen: {err}", file=sys.stderr)
        return 1
    except WorkerFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
