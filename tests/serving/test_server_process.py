"""The server as a user starts it: `mlops serve` (embedded) and `python -m serving` with
tensorflow_model_server's flags, in their own processes, driven by the `mlops` verbs."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.definition.config import load_config
from tests.conftest import MLOPS, REPO, copy_taxi_span, write_config
from tests.serving.conftest import MODEL_NAME, add_version, free_port, wait_until_serving


def terminal_signals() -> None:
    """In the server's process: Ctrl-C acts as in a terminal, however the suite started.

    A shell without job control starts background jobs with SIGINT ignored (`make test &`
    in a script), children inherit that, and Python then never raises KeyboardInterrupt:
    the Ctrl-C tests would wait for a server that cannot hear them.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_with_ctrl_c(server: subprocess.Popen) -> None:
    """Ctrl-C to a server process; it must leave cleanly (killed after 30 s otherwise)."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    assert server.returncode in (0, -signal.SIGINT), server.stderr.read()


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


@pytest.mark.slow
def test_mlops_serve_predict_versions_rollback(workspace: Path, pipeline_model: Path):
    rest, grpc_port = free_port(), free_port()
    copy_taxi_span(2, workspace / "data", rows=5)
    config_file = write_config(workspace, {"serving.rest_api_port": rest,
                                           "serving.grpc_port": grpc_port})
    config = load_config(config_file)
    base = Path(config.serving_model_dir)
    base.mkdir(parents=True)
    for version in (1, 2):
        add_version(base, pipeline_model, version)
    server = subprocess.Popen([MLOPS, "serve", "--embedded", "--config", str(config_file)],
                              preexec_fn=terminal_signals,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        url = f"http://127.0.0.1:{rest}/v1/models/{MODEL_NAME}"
        wait_until_serving(url, server)
        assert [s["version"] for s in httpx.get(url).json()["model_version_status"]] == ["2"]

        csv_file = workspace / "data" / "span-2" / "trips.csv"
        result = run(MLOPS, "predict", "--csv", str(csv_file), "--row", "3",
                     "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        assert '"predictions"' in result.stdout and '"scores"' in result.stdout

        result = run(MLOPS, "predict", "--csv", str(csv_file), "--row", "999",
                     "--config", str(config_file))
        assert result.returncode == 1 and "there is no data row 999" in result.stderr

        # An empty integer cell: int64 has no "missing" value, so the row goes to :classify
        # as a tf.Example without that feature, and says so.
        lines = csv_file.read_text().splitlines()
        header, third = lines[0].split(","), lines[3].split(",")
        third[header.index("dropoff_community_area")] = ""
        gap_file = workspace / "gap.csv"
        gap_file.write_text("\n".join([lines[0], ",".join(third)]) + "\n")
        result = run(MLOPS, "predict", "--csv", str(gap_file), "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        assert '"results"' in result.stdout and '"tip"' in result.stdout
        assert "dropoff_community_area" in result.stderr and ":classify" in result.stderr

        result = run(MLOPS, "rollback", "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        assert "The server now serves version 1." in result.stdout
        result = run(MLOPS, "versions", "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
                 if line.startswith("│") and line.split("│")[1].strip().isdigit()}
        assert "AVAILABLE" in lines["1"] and "END" in lines["2"]
        assert "no server answers" not in result.stdout
    finally:
        stop_with_ctrl_c(server)


def test_python_m_serving_refuses_bad_flags_clearly(tmp_path: Path):
    result = run(sys.executable, "-m", "serving", "--rest_api_port=abc")
    assert result.returncode == 2 and "--rest_api_port: invalid int value: 'abc'" in result.stderr
    result = run(sys.executable, "-m", "serving", "--port=0")
    assert result.returncode == 2
    assert "error: --model_base_path or --model_config_file is required" in result.stderr
    models = tmp_path / "models.config"
    models.write_text('model_config_list { config { name: "m" base_path: "relative/m" } }')
    result = run(sys.executable, "-m", "serving", f"--model_config_file={models}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model 'm': base_path must be absolute" in result.stderr
    models.write_text("model_config_list { config { name: ")
    result = run(sys.executable, "-m", "serving", f"--model_config_file={models}")
    assert result.returncode == 2 and str(models) in result.stderr


@pytest.mark.parametrize("after_unload_s", [1.0, 1.2])
def test_ctrl_c_after_an_unloaded_model_is_collected_exits_cleanly(
        tmp_path: Path, pipeline_model: Path, after_unload_s: float):
    """A version removed from disk is unloaded and collected a second later; a Ctrl-C then
    used to abort the process in TensorFlow's teardown (exit -6, "exception not rethrown")."""
    base = tmp_path / "models" / MODEL_NAME
    base.mkdir(parents=True)
    for version in (1, 2):
        add_version(base, pipeline_model, version)
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", f"--port={free_port()}",
         f"--rest_api_port={free_port()}", f"--model_name={MODEL_NAME}",
         f"--model_base_path={base}", "--file_system_poll_wait_seconds=1"],
        cwd=REPO, stderr=subprocess.PIPE, text=True, preexec_fn=terminal_signals)
    try:
        for awaited in ("Serving gRPC", "Unloaded servable"):
            if awaited == "Unloaded servable":
                shutil.rmtree(base / "2")
            line = "-"
            while line and awaited not in line:
                line = server.stderr.readline()
            assert line, f"the server exited before logging {awaited!r}"
        time.sleep(after_unload_s)
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
