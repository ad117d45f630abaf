"""The metrics as REST workers share them: prometheus_client's multiprocess mode."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_shared_metrics_sum_every_process_and_follow_a_fork(tmp_path):
    """prometheus_client's multiprocess mode, as the REST workers use it (`serving.metrics`):
    each process's counts go to files of its own (a forked child's too) and the page,
    whichever process writes it, sums them in TF Serving's form."""
    script = f"""
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
sys.path.insert(0, {str(REPO)!r})
from serving.metrics import Metrics
metrics = Metrics(lambda: [], shared=True)
metrics.observe("m", "Predict", "REST", "OK", 0.001, version=1)
child = os.fork()
if child == 0:
    for _ in range(2):
        metrics.observe("m", "Predict", "REST", "OK", 0.001, version=1)
    os._exit(0)
os.waitpid(child, 0)
print(metrics.exposition().decode())
print("CHILD", child)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 3' in result.stdout
    assert ':mlops:serving:request_count{model_name="m",version="1",API="Predict",' \
           'entrypoint="REST",status="OK"} 3' in result.stdout
    child = result.stdout.split("CHILD ")[1].strip()
    assert (tmp_path / f"counter_{child}.db").is_file()
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
