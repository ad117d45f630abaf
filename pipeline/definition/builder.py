"""`create_pipeline`: the one function that wires the TFX pipeline for every runner.

The local runner, the `tfx` CLI and the Kubeflow compiler all call it with the same
validated config; they differ only in what they pass for metadata and Beam. Paths come from
the config, so nothing here assumes a local disk.
"""
from __future__ import annotations

import json
import posixpath
from typing import Optional

import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen  # not in tfx.v1
from tfx.dsl.components.base import executor_spec

from components import (
    curated_schema,
    parallelism,
    serving_baseline,
    span_window,
    statistics,
    versioned_pusher,
)
from components import evaluator as evaluator_executor
from components import transform as transform_executor
from components.data_gate import DataValidationGate
from models import features as feature_lib
from models import signatures
from pipeline.definition import fingerprints
from pipeline.definition.config import LOCAL, PipelineConfig, Threshold, join_path
from serving import server_files

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.model.run_fn"
EXAMPLE_GEN_ID = "CsvExampleGen"
# Beam options that tell TFX which package carries the pipeline's code (those TFX checks).
_BEAM_DEPENDENCY_OPTIONS = ("setup_file", "extra_packages", "requirements_file",
                            "sdk_container_image", "worker_harness_container_image")
# Changes of the numerical tolerance aside, "no worse than the baseline" must admit equal.
_EPSILON = 1e-10


def models_code_fingerprint() -> str:
    """A hash of `models/`, passed to Transform and Trainer.

    Their code is referenced by module path, which TFX's cache key does not see; with the
    hash in `custom_config`, editing the model code re-runs them instead of reusing a cache.
    """
    return fingerprints.source_fingerprint([fingerprints.package_dir("models")])


def beam_pipeline_args(config: PipelineConfig) -> list[str]:
    """The config's Beam options, with this project's `setup.py` as the code dependency.

    Without a dependency option TFX packages its own installation as an sdist before each
    Beam component (a subprocess each time, and a copy of TFX left in the temp folder),
    a package that would not even carry `models/`, which Transform and the Evaluator load
    on a distributed runner's workers. This project's package is what a worker needs; the
    direct runner ignores the option. A dependency option in the config is kept as given.
    `pipeline.threads` goes along as `--in_process_threads` (`components.parallelism`),
    unless the Beam arguments already say it.
    """
    args = list(config.pipeline.beam_args)
    if not any(arg.startswith(f"--{parallelism.OPTION}") for arg in args):
        args.append(f"--{parallelism.OPTION}={config.pipeline.threads}")
    setup_file = fingerprints.package_dir("models").parent / "setup.py"
    options = PipelineOptions(flags=args).get_all_options()
    declared = any(options.get(name) for name in _BEAM_DEPENDENCY_OPTIONS)
    if not declared and setup_file.is_file():
        # the project's copy where the tasks run: this checkout, or the pipeline image
        where = (str(setup_file) if config.profile == LOCAL
                 else posixpath.join(config.kubeflow.project_dir, "setup.py"))
        args.append(f"--setup_file={where}")
    return args


def _metric_config(threshold: Threshold) -> tfma.MetricConfig:
    value_bounds = {}
    if threshold.lower_bound is not None:
        value_bounds["lower_bound"] = {"value": threshold.lower_bound}
    if threshold.upper_bound is not None:
        value_bounds["upper_bound"] = {"value": threshold.upper_bound}
    change = None
    if threshold.max_regression is not None:
        allowed = max(threshold.max_regression, _EPSILON)
        change = tfma.GenericChangeThreshold(
            direction=(tfma.MetricDirection.HIGHER_IS_BETTER if threshold.higher_is_better
                       else tfma.MetricDirection.LOWER_IS_BETTER),
            absolute={"value": -allowed if threshold.higher_is_better else allowed})
    # Thresholds judge the whole eval split; slices are reported, not gated (a slice such
    # as "cash payments" may legitimately have one class only, where AUC means nothing).
    return tfma.MetricConfig(
        class_name=threshold.metric,
        per_slice_thresholds=[tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec()],
            threshold=tfma.MetricThreshold(
                value_threshold=(tfma.GenericValueThreshold(**value_bounds)
                                 if value_bounds else None),
                change_threshold=change))])


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA configuration: thresholds from the config, on the transformed label."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # A plain tf.Module SavedModel: said here, TFMA skips a trial Keras load of
            # each model (about a second) that would fail and land on the same answer.
            model_type=tfma.TF_GENERIC,
            signature_name=signatures.EXAMPLES_SIGNATURE,
            label_key=feature_lib.transformed_name(config.label.column),
            prediction_key="outputs",
            preprocessing_function_names=[signatures.TRANSFORM_SIGNATURE])],
        slicing_specs=[tfma.SlicingSpec()] + [
            tfma.SlicingSpec(feature_keys=[name]) for name in config.evaluation.slices],
        metrics_specs=[tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name="ExampleCount")]
            + [_metric_config(t) for t in config.evaluation.thresholds])])


def _example_gen(config: PipelineConfig):
    """CSV ingestion of the chosen span and the `train_spans - 1` spans before it.

    The stock driver resolves `{SPAN}` (newest, or `data.span`), the span window executor
    reads the window; the id stays "CsvExampleGen", what the node is.
    """
    data = config.data
    range_config = None
    if data.span != "latest":
        range_config = tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(
            start_span_number=data.span, end_span_number=data.span))
    return FileBasedExampleGen(
        input_base=data.input_base,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="single_split", pattern=data.span_pattern)]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=data.train_buckets),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=data.eval_buckets)])),
        custom_config=span_window.window_config(data.span_pattern, data.train_spans,
                                                 data.missing_values, data.decoded_copy),
        range_config=range_config,
        custom_executor_spec=executor_spec.BeamExecutorSpec(span_window.Executor),
    ).with_id(EXAMPLE_GEN_ID)


def _serving_baseline(config: PipelineConfig) -> serving_baseline.ServingBaseline:
    """The version being served, as the Evaluator's baseline ("no worse than production").

    `models.config` (kept beside the versions by `mlops serve`) says which version a
    rollback pins. Where the serving directory is not readable here (a volume only the
    pods mount), the state is left out: that task is never cached on Kubeflow.
    """
    models_config = join_path(config.serving.base_directory, server_files.MODELS_CONFIG)
    state = (serving_baseline.serving_state(config.serving_model_dir, models_config)
             if config.profile == LOCAL else "")
    return serving_baseline.ServingBaseline(
        serving_model_dir=config.serving_model_dir, model_name=config.serving.model_name,
        models_config=models_config, serving_state=state)


def create_pipeline(
        config: PipelineConfig,
        metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
        pipeline_root: Optional[str] = None) -> tfx.dsl.Pipeline:
    """Builds the pipeline described by `config`.

    `metadata_connection_config` is given by runners that own their metadata store (the
    local runner's SQLite file); Kubeflow provides its own.
    """
    custom_config = {**config.model_custom_config(), "code_version": models_code_fingerprint()}

    example_gen = _example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    statistics_gen.executor_spec = executor_spec.BeamExecutorSpec(statistics.Executor)
    if config.data.schema_path:
        schema_gen = curated_schema.CuratedSchemaGen(schema_file=config.data.schema_path)
    else:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    data_gate = DataValidationGate(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        contract=json.dumps(config.data_contract(), sort_keys=True))

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=custom_config,
        # StatisticsGen already describes the data. The analyzer cache pays off only when
        # fed back as `analyzer_cache`, which this pipeline does not do; writing it cost a
        # fifth of Transform's time. TF1 graph mode traces `preprocessing_fn` once as a
        # graph instead of saving and reloading tf.functions per analysis phase (the
        # README's Performance section has the figures); the Trainer and the serving
        # signatures read its output through TFTransformOutput as before.
        disable_statistics=True, disable_analyzer_cache=True, force_tf_compat_v1=True,
        # The Trainer applies the transform graph as it reads (models/model.py), so no
        # transformed copy of the data is written, which was most of Transform's output.
        materialize=False)
    transform.executor_spec = executor_spec.BeamExecutorSpec(transform_executor.Executor)
    transform.add_upstream_node(data_gate)  # no training on data that failed validation

    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=config.training.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.training.eval_steps),
        custom_config=custom_config)

    baseline = _serving_baseline(config)

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"], eval_config=eval_config(config))
    evaluator.executor_spec = executor_spec.BeamExecutorSpec(evaluator_executor.Executor)

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(versioned_pusher.Executor))

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=pipeline_root or config.pipeline.root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, data_gate,
                    transform, trainer, baseline, evaluator, pusher],
        enable_cache=config.pipeline.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args(config))
