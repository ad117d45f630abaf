"""Starts the emulated run's task processes warm: forked from one process that has imported TFX.

Why: a task of the compiled package is `python -m pipeline.kubeflow.entrypoint ...`, and a
new interpreter spends about five seconds importing TensorFlow, TFX and Beam before the
executor starts: three quarters of an emulated run of this pipeline (`make
bench-kubeflow`). A cluster pays that in every pod, and the cold start (`emulator.py`'s
default) shows it; when what is being checked is the run itself (the tests, a quick `mlops
kfp run --local --warm`), one process imports the entrypoint once and each task is a fork
of it: still its own process, in its own mount namespace, with its own environment, log
and exit status, and the entrypoint still runs as `__main__` with the task's arguments.

What a warm start does not check: the entrypoint's imports in a fresh interpreter (done
once, in the parent) and anything the task's environment changes at import time; a task's
`sys.path` is the parent's (its PYTHONPATH at start). Several runs may share one parent
(`emulator.run_package(warm=<WarmStarter>)`), as the tests' runs of one package do.
It needs root (a forked child makes its own mount namespace with `unshare(2)`, which an
unprivileged process with threads cannot); elsewhere `available()` says no and tasks start
cold.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
PRELOADED = ("pipeline.kubeflow.entrypoint",
             "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")


def available() -> bool:
    """Whether tasks can start warm here (root, Linux)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def module_of(argv: Sequence[str], python: str) -> Optional[str]:
    """The module a task runs (`<python> -m <module> ...`), or None for another command."""
    if len(argv) >= 3 and argv[0] == python and argv[1] == "-m":
        return argv[2]
    return None


class WarmStarter:
    """One preloaded parent process; `run` forks a task from it and waits for it (one task
    at a time: tasks a run could start side by side wait for each other here)."""

    def __init__(self, python: str, env: Mapping[str, str],
                 preload: Sequence[str] = PRELOADED):
        """Starts the parent, which imports the `preload` modules (TFX's entrypoint; a test
        of the fork itself needs none) before it answers."""
        self._lock = threading.Lock()  # one request at a time: a run's tasks share the pipe
        self._parent = subprocess.Popen(
            [python, "-c", "import sys; from pipeline.kubeflow import warm_pods; "
                           "warm_pods.serve(sys.argv[1:])", *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(env), cwd=os.getcwd(), text=True)
        self._ask({"ping": True})  # waits until the imports are done

    def _ask(self, request: dict) -> dict:
        assert self._parent.stdin and self._parent.stdout
        with self._lock:
            self._parent.stdin.write(json.dumps(request) + "\n")
            self._parent.stdin.flush()
            answer = self._parent.stdout.readline()
        if not answer:
            raise RuntimeError(f"the warm parent process ended (status "
                               f"{self._parent.wait()})")
        return json.loads(answer)

    def run(self, module: str, arguments: Sequence[str], mounts: Sequence[tuple[str, str]],
            env: Mapping[str, str], log: Path) -> int:
        """Runs `python -m module arguments` as a fork of the parent; returns its status."""
        return int(self._ask({"module": module, "arguments": list(arguments),
                              "mounts": [list(pair) for pair in mounts], "env": dict(env),
                              "log": str(log), "cwd": os.getcwd()})["status"])

    def close(self) -> None:
        if self._parent.poll() is None:
            assert self._parent.stdin
            self._parent.stdin.close()
            try:
                self._parent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._parent.kill()
                self._parent.wait()


@contextlib.contextmanager
def shared_parent(python: str, env: Mapping[str, str]) -> Iterator[bool | WarmStarter]:
    """A preloaded parent for several runs to share (`run_package(warm=...)`, with the same
    `python` and environment), closed on leaving; False where tasks cannot start warm."""
    if not available():
        yield False
        return
    with contextlib.closing(WarmStarter(python, env)) as starter:
        yield starter


def serve(preload: Sequence[str] = PRELOADED) -> None:
    """The parent: import `preload` once, then fork a child per request on stdin.

    When stdin closes the parent leaves at once (its children have all been waited for):
    the interpreter's teardown of TensorFlow would take close() about 1.7 s more.
    """
    from pipeline.runtime import process

    process.before_tensorflow()  # as the entrypoint's main() does first
    import importlib

    for name in preload:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        status = 0 if request.get("ping") else _fork_task(request)
        sys.stdout.write(json.dumps({"status": status}) + "\n")
        sys.stdout.flush()
    os._exit(0)


def _fork_task(request: dict) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child ends with os._exit)
        os._exit(_child(request))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # a signal, as a shell reports it


def _child(request: dict) -> int:
    import runpy
    import traceback

    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _own_mounts(request["mounts"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [request["module"], *request["arguments"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 (the task's failure, reported in its log)
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def _own_mounts(mounts: Sequence[Sequence[str]]) -> None:
    """A private mount namespace with the task's bind mounts, as `unshare -m` + `mount
    --bind` give a cold task."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")

    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    for source, target in mounts:
        os.makedirs(target, exist_ok=True)
        check(libc.mount(source.encode(), target.encode(), None, _MS_BIND, None),
              f"mount --bind {source} {target}")
