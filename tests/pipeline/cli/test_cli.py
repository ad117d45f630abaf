"""The `mlops` configuration commands (fast: no TFX run): `check-config` through the app in
this process, the console script itself where the process is the point (its environment,
`run` refusing a config before TFX starts)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import MLOPS, mlops, mlops_in_process


def test_check_config_summarises_a_valid_config(config_file: Path):
    result = mlops_in_process("check-config", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: pipeline chicago-taxi, 14 features, label 'tips'")


def test_check_config_lists_problems_without_a_traceback(config_file: Path):
    result = mlops_in_process("check-config", "--config", str(config_file), "--set",
                              "training.train_steps=lots", "--set", "serving.modle_name=x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"Invalid configuration in {config_file}:" in result.stderr
    assert "training.train_steps:" in result.stderr
    assert "serving.modle_name: unknown key (did you mean 'model_name'?)" in result.stderr


def test_check_config_checks_the_kubeflow_profile_and_beam_args(config_file: Path):
    """Beam's own parser judges pipeline.beam_args in both profiles, offline, before a run
    would fail inside its first Beam component."""
    ok = mlops_in_process("check-config", "--config", str(config_file))
    assert "ok: kubeflow profile: image mlops-tfx-pipeline:latest, root gs://" in ok.stdout
    dataflow = mlops_in_process("check-config", "--config", str(config_file), "--set",
                                'profiles.kubeflow.pipeline.beam_args=["--runner=DataflowRunner",'
                                ' "--project=my-project", "--temp_location=gs://my-bucket/tmp"]')
    assert dataflow.returncode == 2, dataflow.stdout
    assert "Traceback" not in dataflow.stderr
    assert dataflow.stderr.splitlines() == [
        "error: Beam refuses pipeline.beam_args:",
        "  - pipeline.beam_args (profile kubeflow): Missing required option: region."]
    bad_value = mlops_in_process("check-config", "--config", str(config_file),
                                 "--set", 'pipeline.beam_args=["--direct_running_mode=fast"]')
    assert bad_value.returncode == 2
    assert "  - pipeline.beam_args: argument --direct_running_mode: invalid choice: 'fast'" \
        in bad_value.stderr


def test_check_config_reads_the_header_of_the_span_a_run_would_read(config_file: Path):
    """A label or feature that is not a column of the newest span is named with its key
    (a run would only find out after ingestion, in the data gate)."""
    result = mlops_in_process("check-config", "--config", str(config_file), "--set",
                              "label.column=tip", "--set", "features.numeric=[fare, trip_mile]")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[1].startswith("  - features.numeric: 'trip_mile' is not a column of ")
    assert "span-1/trips.csv (did you mean 'trip_miles'?); its columns: " in lines[1]
    assert lines[2].startswith("  - label.column: 'tip' is not a column of ")
    assert len(lines) == 3


def test_check_config_refuses_one_port_for_both_apis(config_file: Path):
    result = mlops_in_process("check-config", "--config", str(config_file), "--set",
                              "serving.grpc_port=8501", "--set", "serving.rest_api_port=8501")
    assert result.returncode == 2
    assert "  - serving: grpc_port and rest_api_port are both 8501: the two APIs need a " \
        "port each" in result.stderr.splitlines()


def test_run_refuses_a_bad_config_before_importing_tfx(config_file: Path):
    result = mlops("run", "--config", str(config_file), "--set", "data.span=99")
    assert result.returncode == 2
    assert "data.span_pattern: no file for span 99" in result.stderr
    assert "Running" not in result.stdout


def test_config_from_the_environment_variable(config_file: Path):
    result = subprocess.run([MLOPS, "check-config"], capture_output=True, text=True,
                            timeout=120, env={"MLOPS_CONFIG": str(config_file),
                                              "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
