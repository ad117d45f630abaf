"""The container entrypoint's repair of what open-source KFP's launcher hands a TFX task.

The ExecutorInput shapes below are those of KFP's v2 backend: upstream artifacts built by
`backend/src/v2/metadata/client.go` (`GetOutputArtifactsByExecutionId`, `Schema: ""`),
and the `executor-logs` output of type `system.Artifact` that backend 2.5's driver adds
with `--publish_logs=true` (`backend/src/v2/driver/driver.go`, `provisionOutputs`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.kubeflow import entrypoint
from tests.conftest import REPO

EXAMPLES_TYPE = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}
INPUTS_SPEC = {"artifacts": {"examples": {"artifactType": EXAMPLES_TYPE}},
               "parameters": {"exclude_splits": {"parameterType": "STRING"}}}


def executor_input(input_type: dict) -> dict:
    return {
        "inputs": {
            "parameterValues": {"exclude_splits": "[]"},
            "artifacts": {"examples": {"artifacts": [{
                "name": "17", "type": input_type, "uri": "gs://root/p/run/CsvExampleGen/examples",
                "metadata": {"span": 3.0, "split_names": '["train", "eval"]'}}]}}},
        "outputs": {
            "artifacts": {
                "statistics": {"artifacts": [{
                    "type": {"schemaTitle": "tfx.ExampleStatistics"},
                    "uri": "gs://root/p/run/StatisticsGen/statistics"}]},
                "executor-logs": {"artifacts": [{
                    "type": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"},
                    "uri": "gs://root/p/run/StatisticsGen/executor-logs"}]}},
            "outputFile": "/tmp/kfp_outputs/output_metadata.json"}}


def test_untyped_inputs_get_the_type_the_component_declares():
    repaired, _ = entrypoint.repair(executor_input({"instanceSchema": ""}), INPUTS_SPEC)
    artifact = repaired["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert artifact["type"] == EXAMPLES_TYPE
    # everything else as KFP sent it: the name (TFX derives model ids from it), metadata
    assert artifact["name"] == "17" and artifact["metadata"]["span"] == 3.0


def test_typed_inputs_are_left_alone():
    typed = {"schemaTitle": "tfx.Examples", "schemaVersion": "0.0.1"}
    repaired, _ = entrypoint.repair(executor_input(typed), INPUTS_SPEC)
    assert repaired["inputs"]["artifacts"]["examples"]["artifacts"][0]["type"] == typed


def test_kfp_s_own_outputs_are_left_out_and_tfx_s_kept():
    original = executor_input({"instanceSchema": ""})
    repaired, dropped = entrypoint.repair(original, INPUTS_SPEC)
    assert dropped == ["executor-logs"]
    assert set(repaired["outputs"]["artifacts"]) == {"statistics"}
    assert repaired["outputs"]["outputFile"] == "/tmp/kfp_outputs/output_metadata.json"
    assert "executor-logs" in original["outputs"]["artifacts"]  # the input is not changed


def test_an_input_the_component_does_not_declare_is_a_clear_error():
    with pytest.raises(entrypoint.ExecutorInputError, match="'examples' is untyped"):
        entrypoint.repair(executor_input({"instanceSchema": ""}), {"artifacts": {}})


def test_the_repaired_input_is_what_tfx_s_parser_accepts():
    """TFX's own parser fails on the raw input (tensorflow/tfx#7768) and reads the
    repaired one as a typed Examples artifact with KFP's metadata."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils

    def parse(document: dict):
        message = json_format.ParseDict(document, pipeline_spec_pb2.ExecutorInput())
        return utils.parse_raw_artifact_dict(message.inputs.artifacts)

    raw = executor_input({"instanceSchema": ""})
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        parse(raw)
    examples = parse(entrypoint.repair(raw, INPUTS_SPEC)[0])["examples"][0]
    assert examples.type_name == "Examples"
    assert examples.split_names == '["train", "eval"]'
    assert examples.span == 3


# --- how a task ends -------------------------------------------------------------------------

PROBE = "tests.pipeline.kubeflow.exit_probe"


class Exited(Exception):
    """`process.exit_now`, caught in the test's own process."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def task_arguments(tmp_path, executor: str, invocation: dict | None = None) -> list[str]:
    invocation = invocation or {
        "inputs": {"parameterValues": {"marker": str(tmp_path / "marker")}},
        "outputs": {"outputFile": str(tmp_path / "outputs" / "executor_output.json")}}
    inputs_spec = {"parameters": {"marker": {"parameterType": "STRING"}}}
    return [f"--executor_class_path={PROBE}.{executor}",
            f"--json_serialized_invocation_args={json.dumps(invocation)}",
            f"--json_serialized_inputs_spec_args={json.dumps(inputs_spec)}"]


def run_in_process(monkeypatch, arguments: list[str]) -> int:
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entry

    def exit_now(code: int):
        raise Exited(code)

    monkeypatch.setattr(entrypoint.process, "exit_now", exit_now)
    with pytest.raises(Exited) as exited:
        entrypoint.run(tfx_entry._parse_flags(arguments))  # pylint: disable=protected-access
    return exited.value.code


def test_a_task_whose_executor_succeeded_ends_with_0_after_its_output_is_written(
        tmp_path, monkeypatch):
    assert run_in_process(monkeypatch, task_arguments(tmp_path, "MarkedExecutor")) == 0
    assert (tmp_path / "marker.done").exists()
    assert json.loads((tmp_path / "outputs" / "executor_output.json").read_text()) == {}


def test_a_task_whose_executor_failed_ends_with_1_and_the_error_in_its_log(
        tmp_path, monkeypatch, caplog):
    assert run_in_process(monkeypatch, task_arguments(tmp_path, "FailingExecutor")) == 1
    assert "the reason the executor broke" in caplog.text
    assert not (tmp_path / "outputs" / "executor_output.json").exists()


def test_arguments_that_are_not_json_end_the_task_with_1_and_one_line(tmp_path, monkeypatch,
                                                                       caplog):
    arguments = [f"--executor_class_path={PROBE}.MarkedExecutor",
                 "--json_serialized_invocation_args={not json"]
    assert run_in_process(monkeypatch, arguments) == 1
    assert "The task's arguments cannot be used" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.slow  # a new interpreter importing TensorFlow and TFX, as a pod's
def test_a_task_process_ends_without_the_interpreter_s_teardown_and_runs_keras_2(tmp_path):
    """The pod's command (`python -m pipeline.kubeflow.entrypoint`) ends its process once
    the executor's outputs are written: the interpreter's teardown of TensorFlow, TFX and
    Beam (its atexit handlers, module clean-up) cost each task about two seconds here
    (`make bench-kubeflow`), and with tensorflow-io loaded it aborts. The executor's
    atexit handler is the witness: a process that tore down would have run it.

    The process starts with a pod's environment, the image's, which does not set
    `TF_USE_LEGACY_KERAS` (every process of ours here does, so the emulated pods inherit
    it): the entrypoint sets it before TensorFlow loads, so `tf.keras` is Keras 2 in the
    executor, as under `mlops run`; without it, Keras 3 (tf.Transform's import sets the
    variable too late for `tf.keras`)."""
    environment = {name: value for name, value in os.environ.items()
                   if name != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.kubeflow.entrypoint",
         *task_arguments(tmp_path, "MarkedExecutor")],
        cwd=REPO, env={**environment, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "outputs" / "executor_output.json").exists()
    assert not (tmp_path / "marker.teardown").exists()
    assert (tmp_path / "marker.done").read_text().startswith("tf_keras")
