"""The container entrypoint's repair of what open-source KFP's launcher hands a TFX task.

The ExecutorInput shapes below are those of KFP's v2 backend: upstream artifacts built by
`backend/src/v2/metadata/client.go` (`GetOutputArtifactsByExecutionId`, `Schema: ""`),
and the `executor-logs` output of type `system.Artifact` that backend 2.5's driver adds
with `--publish_logs=true` (`backend/src/v2/driver/driver.go`, `provisionOutputs`).
"""
from __future__ import annotations

import pytest

from pipeline.kubeflow import entrypoint

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
