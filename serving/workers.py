"""REST workers: more processes answering one server's REST port.

One Python process carries about a tenth of what the model computes (its event loop is
the bottleneck; docs/performance.md, "Many clients against the model's batch rate"). With
``--rest_api_workers=N`` the server (the primary) listens on its REST port with
SO_REUSEPORT and starts N-1 workers: each a ``python -m serving.workers`` process that
loads every model itself and listens on the same port, so the kernel spreads new
connections over the N processes. gRPC stays on the primary.

What holds across the processes, and how:

- **Hot swaps.** Every process follows the same files on the same clocks (version
  directories, models.config, the canary split) and keeps an old version until the new
  one is warmed, so a swap fails no request in any of them. Each process loads a version
  on its own: for a moment after a push, a request pinned to the new version can be
  answered 404 by a process that has not loaded it yet, while the bare URL is answered by
  one version or the other.
- **Canary split.** A keyed request (``X-Request-Key``) lands on the same side in every
  process (`serving.traffic.bucket` hashes the key); unkeyed requests are split in each
  process by its own runs, so the totals keep the weight.
- **Request log and posted labels.** Each process writes its own files (its pid in the
  name) into the same folders; `mlops skew` and `mlops span-from-requests` read them all.
- **Metrics.** Shared through prometheus_client's multiprocess folder
  (``PROMETHEUS_MULTIPROC_DIR``, made by ``python -m serving``); the metrics page sums
  every process, whichever answers the scrape (`serving.metrics`).
- **ReloadConfig** (gRPC, on the primary) is applied by the primary, then sent to each
  worker's own gRPC port (loopback only, its port known to the primary alone), and again
  to a worker that restarts.
- **Lifetime.** A worker reads its options from its stdin and stops when stdin closes:
  when the primary stops it, or dies, even by SIGKILL (then the worker also removes the
  shared metrics folder, which the primary had no chance to). A worker that exits on its own is
  started again after a pause (1 s, doubling to 30 s while it keeps failing).
- A rollout (``--rollout``) keeps its measurements in one process, so it needs one
  (`serving.options` refuses both together).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import Optional

import grpc

from serving.config_files import ModelServerConfig
from serving.errors import Code, ServingError
from serving.options import ServerOptions
from serving.process import MULTIPROC_ENV

log = logging.getLogger("serving.workers")

READY_TIMEOUT_S = 600.0  # a worker loads and warms every model before it listens
STOP_TIMEOUT_S = 30.0  # calls in flight finish and the request log is written out
RESTART_PAUSE_S = (1.0, 30.0)  # first pause before a restart, and the longest
_STEADY_S = 60.0  # a worker up this long that exits is restarted after the first pause


def ensure_port_free(host: str, port: int) -> None:
    """Binds ``port`` once without SO_REUSEPORT, then lets it go: the primary's check
    before it listens with SO_REUSEPORT. Otherwise a second server with workers started on
    the same port would start too, silently splitting the first one's connections with it
    (tensorflow_model_server would refuse to start: the port is in use).

    Raises:
        OSError: the port is in use, naming it.
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the listener will: a port a stopped server left in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OSError(err.errno, f"REST port {host}:{port} is in use "
                                     f"({err.strerror})") from None


class WorkerFailed(Exception):
    """A REST worker could not start (it exited, or was not ready in time)."""


@dataclasses.dataclass
class _Worker:
    index: int  # 1..N-1; the primary is 0
    process: Optional[asyncio.subprocess.Process] = None
    grpc_port: Optional[int] = None
    started_at: float = 0.0


class WorkerPool:
    """The primary's side: starts, watches, restarts and stops the REST workers."""

    def __init__(self, options: ServerOptions, rest_port: int, verbose: bool = False) -> None:
        """``options``: the primary's; the workers take them with the REST port the
        primary bound (so a port 0 is the same port in every process)."""
        intra, inter = options.session_threads()  # as the primary's: resolved for N
        self.worker_options = dataclasses.replace(
            options, rest_api_port=rest_port, rest_api_workers=1, port=0,
            ssl_config_file="", tensorflow_session_parallelism=0,
            tensorflow_intra_op_parallelism=intra, tensorflow_inter_op_parallelism=inter)
        self.verbose = verbose
        self.workers = [_Worker(index) for index in range(1, options.rest_api_workers)]
        self._reloaded: Optional[ModelServerConfig] = None  # the last ReloadConfig
        self._stopping = False
        self._watchers: list[asyncio.Task] = []

    async def start(self) -> None:
        """Starts every worker and returns once each listens on the REST port.

        Raises:
            WorkerFailed: a worker exited before it was ready, or was not ready within
                READY_TIMEOUT_S; the others are stopped.
        """
        try:
            await asyncio.gather(*(self._start(worker) for worker in self.workers))
        except BaseException:
            await self.stop()
            raise
        self._watchers = [asyncio.create_task(self._watch(worker)) for worker in self.workers]

    async def stop(self) -> None:
        """Asks every worker to stop (its stdin closed: calls in flight finish, its request
        log is written out) and waits for them; one still running after STOP_TIMEOUT_S is
        killed."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*(self._stop(worker) for worker in self.workers))

    async def reload_config(self, config: ModelServerConfig) -> None:
        """Sends a ReloadConfig the primary accepted to every worker (and, later, to any
        worker that restarts).

        Raises:
            ServingError: INTERNAL naming the worker that did not apply it.
        """
        self._reloaded = config
        await asyncio.gather(*(self._send_config(worker, config) for worker in self.workers
                               if worker.grpc_port is not None))

    # --- one worker ----------------------------------------------------------------------

    async def _start(self, worker: _Worker) -> None:
        spec = {"index": worker.index, "verbose": self.verbose, "primary": os.getpid(),
                "options": dataclasses.asdict(self.worker_options)}
        worker.grpc_port = None
        worker.started_at = time.monotonic()
        worker.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "serving.workers", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        process.stdin.write(json.dumps(spec).encode() + b"\n")
        await process.stdin.drain()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise WorkerFailed(f"REST worker {worker.index} was not ready within "
                               f"{READY_TIMEOUT_S:g} s") from None
        if not line:
            code = await process.wait()
            raise WorkerFailed(f"REST worker {worker.index} exited with code {code} before "
                               "it was ready (its error is above)")
        worker.grpc_port = json.loads(line)["grpc_port"]
        if self._reloaded is not None:
            await self._send_config(worker, self._reloaded)
        log.info("REST worker %d ready (pid %d)", worker.index, process.pid)

    async def _watch(self, worker: _Worker) -> None:
        """Restarts the worker whenever it exits on its own, pausing longer while it
        keeps failing."""
        pause = RESTART_PAUSE_S[0]
        while not self._stopping:
            code = await worker.process.wait()
            if self._stopping:
                return
            worker.grpc_port = None
            if time.monotonic() - worker.started_at >= _STEADY_S:  # it had been serving
                pause = RESTART_PAUSE_S[0]
            log.warning("REST worker %d (pid %d) exited with code %s: starting it again in "
                        "%g s", worker.index, worker.process.pid, code, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_PAUSE_S[1])
            if self._stopping:
                return
            try:
                await self._start(worker)
            except WorkerFailed as err:
                log.error("%s", err)
            except Exception:  # keep watching: a failed restart is retried
                log.exception("restarting REST worker %d failed", worker.index)

    async def _stop(self, worker: _Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        try:
            process.stdin.close()
        except (OSError, RuntimeError):
            pass
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("REST worker %d (pid %d) did not stop in %g s: killed", worker.index,
                        process.pid, STOP_TIMEOUT_S)
            process.kill()
            await process.wait()

    async def _send_config(self, worker: _Worker, config: ModelServerConfig) -> None:
        from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            try:
                response = await stub.HandleReloadConfigRequest(
                    model_management_pb2.ReloadConfigRequest(config=config), timeout=300)
            except grpc.aio.AioRpcError as err:
                raise ServingError(Code.INTERNAL, f"REST worker {worker.index} did not take "
                                   f"the config: {err.details()}") from None
        if response.status.error_code:
            raise ServingError(Code.INTERNAL, f"REST worker {worker.index} refused the "
                               f"config: {response.status.error_message}")


# --- the worker's side --------------------------------------------------------------------


def _stop_when_stdin_closes(stop) -> None:
    """A thread's work: blocks on stdin until the primary closes it (or dies), then stops."""
    sys.stdin.buffer.read()
    stop("the primary closed its pipe")


def main() -> int:
    """``python -m serving.workers``: one REST worker, its options on stdin's first line."""
    ready = os.fdopen(os.dup(1), "w")  # the ready line's own descriptor...
    os.dup2(2, 1)  # ...so that nothing else printed can be taken for it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the primary, which stops us
    spec = json.loads(sys.stdin.readline())
    options = ServerOptions(**spec["options"])
    from serving.process import quiet_libraries

    quiet_libraries(spec["verbose"])
    logging.basicConfig(level=logging.DEBUG if spec["verbose"] else logging.INFO,
                        format=f"%(asctime)s %(levelname).1s %(name)s] "
                               f"[REST worker {spec['index']}] %(message)s")
    from serving.server import run

    def started(server, stop) -> None:
        threading.Thread(target=_stop_when_stdin_closes, args=(stop,), daemon=True,
                         name="stdin").start()
        ready.write(json.dumps({"grpc_port": server.grpc_port}) + "\n")
        ready.flush()

    code = run(options, worker=True, on_started=started)
    if os.getppid() != spec["primary"]:  # orphaned: the primary died without cleaning up
        shutil.rmtree(os.environ.get(MULTIPROC_ENV, ""), ignore_errors=True)
    return code

if __name__ == "__main__":
    from serving.process import exit_now

    exit_now(main())
