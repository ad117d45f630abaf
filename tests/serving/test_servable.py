"""A model version in memory (`serving.servable`): the thread pools its session runs on.

TensorFlow sizes its intra-op and inter-op pools once per process, when the first session
(or eager context) is made, so the numbers are checked in new processes that load a
version first, as `python -m serving` does, and count the threads the load started.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Loads the version at argv[1] with (intra, inter) = argv[2:4]; prints the threads it added.
COUNT_LOAD_THREADS = """
import os, sys
from serving.servable import Servable
def threads(): return len(os.listdir(f"/proc/{os.getpid()}/task"))
before = threads()
Servable("m", 1, sys.argv[1], (int(sys.argv[2]), int(sys.argv[3])))
print(threads() - before)
"""


@pytest.fixture(scope="module")
def doubling_model(tmp_path_factory) -> Path:
    import tensorflow as tf

    class Doubling(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2.0}

    path = tmp_path_factory.mktemp("doubling") / "1"
    module = Doubling()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_the_sessions_pools_have_the_threads_asked_for(doubling_model):
    """(3, 5) starts six threads more than (1, 1): two and four more in the two pools."""
    loads = {threads: subprocess.Popen(
        [sys.executable, "-c", COUNT_LOAD_THREADS, str(doubling_model), *map(str, threads)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
        for threads in ((1, 1), (3, 5))}
    started = {}
    for threads, load in loads.items():
        out, err = load.communicate(timeout=120)
        assert load.returncode == 0, err[-2000:]
        started[threads] = int(out.split()[-1])
    assert started[(3, 5)] - started[(1, 1)] == (3 - 1) + (5 - 1), started
