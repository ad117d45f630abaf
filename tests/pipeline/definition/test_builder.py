"""The one pipeline-building function: components, wiring and evaluation config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import tensorflow_model_analysis as tfma

from components import curated_schema
from pipeline.definition import builder
from pipeline.definition.config import load_config
from tests.conftest import REPO


@pytest.fixture
def config(config_file: Path):
    return load_config(config_file)


def node_ids(pipeline) -> list[str]:
    return [component.id for component in pipeline.components]


def test_all_components_in_a_valid_order(config):
    pipeline = builder.create_pipeline(config)
    order = node_ids(pipeline)
    assert sorted(order) == sorted([
        "CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
        "DataValidationGate", "Transform", "Trainer", "ServingBaseline",
        "Evaluator", "Pusher"])
    chain = ["CsvExampleGen", "StatisticsGen", "ExampleValidator", "DataValidationGate",
             "Transform", "Trainer", "Evaluator", "Pusher"]
    assert [order.index(n) for n in chain] == sorted(order.index(n) for n in chain)
    assert pipeline.pipeline_info.pipeline_name == "chicago-taxi"
    assert pipeline.enable_cache is True


def test_training_waits_for_the_data_gate(config):
    components = {c.id: c for c in builder.create_pipeline(config).components}
    assert "DataValidationGate" in {n.id for n in components["Transform"].upstream_nodes}


def test_curated_schema_switches_to_import_schema_gen(config, workspace: Path):
    schema = workspace / "schema.pbtxt"
    schema.write_text('feature { name: "fare" type: FLOAT }\n')
    config.data.schema_path = str(schema)
    assert "ImportSchemaGen" in node_ids(builder.create_pipeline(config))


def test_pusher_uses_the_versioned_executor_and_configured_directory(config):
    pusher = {c.id: c for c in builder.create_pipeline(config).components}["Pusher"]
    assert pusher.executor_spec.executor_class.__module__ == "components.versioned_pusher"
    destination = json.loads(pusher.exec_properties["push_destination"])
    assert destination["filesystem"]["base_directory"] == config.serving_model_dir


def test_data_contract_covers_features_and_label(config):
    contract = config.data_contract()
    assert contract["fare"] == "numeric"
    assert contract["pickup_latitude"] == "bucketized"
    assert contract["payment_type"] == "categorical"
    assert contract["tips"] == "numeric_label"


def test_thresholds_become_tfma_overall_slice_thresholds(config):
    eval_config = builder.eval_config(config)
    metrics = {m.class_name: m for m in eval_config.metrics_specs[0].metrics}
    accuracy = metrics["BinaryAccuracy"]
    assert not accuracy.HasField("threshold")  # judged on the whole eval split only
    [per_slice] = accuracy.per_slice_thresholds
    assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.8
    change = per_slice.threshold.change_threshold
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert change.absolute.value == pytest.approx(-0.01)
    assert eval_config.model_specs[0].label_key == "tips_xf"
    assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ["payment_type"]]


def test_lower_is_better_metrics_allow_an_increase(config_file: Path):
    config = load_config(config_file, [
        "label.task=regression", "label.positive_above=null", "label.class_names=null",
        "evaluation.thresholds=[{metric: MeanSquaredError, upper_bound: 5.0, "
        "max_regression: 0.0}]"])
    metric = builder.eval_config(config).metrics_specs[0].metrics[1]
    threshold = metric.per_slice_thresholds[0].threshold
    assert threshold.value_threshold.upper_bound.value == 5.0
    assert threshold.change_threshold.direction == tfma.MetricDirection.LOWER_IS_BETTER
    assert 0 < threshold.change_threshold.absolute.value < 1e-6


def test_code_fingerprint_reaches_transform_and_trainer(config):
    components = {c.id: c for c in builder.create_pipeline(config).components}
    for name in ("Transform", "Trainer"):
        custom = json.loads(components[name].exec_properties["custom_config"])
        assert custom["code_version"] == builder.models_code_fingerprint()
        assert custom["features"]["numeric"] == ["fare", "trip_miles", "trip_seconds"]


@pytest.mark.parametrize("setting,expected", [((), True),
                                               (("data.decoded_copy=false",), False)])
def test_data_decoded_copy_reaches_example_gen(config_file: Path, setting, expected) -> None:
    from components import span_window

    config = load_config(config_file, overrides=setting)
    components = {c.id: c for c in builder.create_pipeline(config).components}
    window = span_window.read_window_config(components["CsvExampleGen"].exec_properties)
    assert window.decoded_copy is expected


def test_the_same_pipeline_compiles_for_kubeflow_v2(config, tmp_path: Path):
    """Design check for the Kubeflow runner (its own issue): the pipeline this function
    builds compiles to a KFP v2 spec, with the data gate still ahead of training and a
    curated schema keyed by its content (KFP caches on parameters too). Only the spec is
    checked; no cluster runs here."""
    import yaml
    from tfx import v1 as tfx

    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "fare" type: FLOAT }\n')
    config.data.schema_path = str(schema)
    output = tmp_path / "pipeline.yaml"
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.kubeflow.image),
        output_filename=str(output))
    runner.run(builder.create_pipeline(config, pipeline_root="gs://bucket/root"))
    spec = yaml.safe_load(output.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert spec["pipelineInfo"]["name"] == "chicago-taxi"
    assert {"CsvExampleGen", "DataValidationGate", "Transform", "Trainer", "Evaluator",
            "Pusher"} <= set(tasks)
    assert "DataValidationGate" in tasks["Transform"]["dependentTasks"]
    parameters = tasks["ImportSchemaGen"]["inputs"]["parameters"]
    assert parameters["content_fingerprint"]["runtimeValue"]["constantValue"]["stringValue"] \
        == curated_schema.content_fingerprint(str(schema))


def test_beam_gets_this_project_as_its_code_dependency(config):
    """With a dependency option TFX does not package its own installation before every
    Beam component (an sdist built in a subprocess each time)."""
    from tfx.utils import dependency_utils

    args = builder.create_pipeline(config).beam_pipeline_args
    setup_file = REPO / "setup.py"
    assert args == [*config.pipeline.beam_args, "--in_process_threads=auto",
                    f"--setup_file={setup_file}"]
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_a_dependency_option_in_the_config_is_kept_as_given(config):
    config.pipeline.beam_args = ["--runner=DataflowRunner",
                                 "--extra_package=dist/mlops_pipeline.tar.gz",
                                 "--in_process_threads=1"]
    assert builder.beam_pipeline_args(config) == config.pipeline.beam_args


def test_pipeline_threads_reach_the_components_as_a_beam_option(config):
    """`pipeline.threads` is what `components.parallelism` reads in every Beam component."""
    from components import parallelism

    config.pipeline.threads = 3
    args = builder.beam_pipeline_args(config)
    assert "--in_process_threads=3" in args
    assert parallelism.threads_for(args, input_bytes=0) == 3


def test_statistics_use_the_in_process_executor(config):
    statistics_gen = {c.id: c for c in builder.create_pipeline(config).components}[
        "StatisticsGen"]
    assert statistics_gen.executor_spec.executor_class.__module__ == "components.statistics"
