"""Warm task starts (`warm_pods.py`): each task a fork of one preloaded process, with its
own arguments, environment, log, exit status and private mount namespace, as a cold
`unshare -m` start gives it (emulator.py `_pod_argv`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.kubeflow import warm_pods

pytestmark = pytest.mark.skipif(not warm_pods.available(), reason="warm starts need root")


def test_each_task_is_its_own_forked_process_with_its_own_mounts_env_and_status(
        tmp_path: Path):
    claim, mount_path = tmp_path / "claim", tmp_path / "pod" / "mnt"
    claim.mkdir()
    (claim / "data.txt").write_text("x")
    # nothing preloaded: the fork is under test here; the Kubeflow runs preload TFX
    starter = warm_pods.WarmStarter(sys.executable, {**os.environ, "OTHER": "parent"},
                                    preload=())
    try:
        runs = []
        for status in (0, 3, 99):
            log = tmp_path / f"log-{status}.txt"
            code = starter.run("tests.pipeline.kubeflow.warm_task", [str(mount_path),
                                                                     str(status)],
                               [(str(claim), str(mount_path))],
                               {**os.environ, "GREETING": f"hello {status}"}, log)
            runs.append((code, log.read_text()))
    finally:
        starter.close()

    assert [code for code, _ in runs] == [0, 3, 1]
    for (code, text), status in zip(runs, (0, 3, 99)):
        assert f"argv=['{mount_path}', '{status}']" in text
        assert f"GREETING=hello {status} OTHER=None" in text  # the task's env, not the parent's
        assert "mounted: ['data.txt'" in text
    assert "RuntimeError: the task failed" in runs[2][1]  # a crash goes to the task's log
    pids = {text.split("pid=")[1].split()[0] for _, text in runs}
    assert len(pids) == 3 and str(os.getpid()) not in pids
    # each write went through the task's bind mount into the claim; the mount stayed private
    assert sorted(p.name for p in claim.iterdir()) == [
        "data.txt", "written-0", "written-3", "written-99"]
    assert not any(mount_path.iterdir())


def test_only_python_module_commands_start_warm():
    python = sys.executable
    assert warm_pods.module_of([python, "-m", "pipeline.kubeflow.entrypoint", "--x"],
                               python) == "pipeline.kubeflow.entrypoint"
    assert warm_pods.module_of([python, "-c", "print(1)"], python) is None
    assert warm_pods.module_of(["/other/python", "-m", "m"], python) is None
