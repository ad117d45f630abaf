"""The in-process Evaluator writes what TFX's Beam Evaluator writes, on the same inputs.

Real TFX executors, real SavedModels with the signatures the pipeline exports
(`predict_examples` on serialized tf.Examples, `transform_features` with the transformed
label), real gzipped tf.Examples of the taxi sample. The comparisons run TFX's stock
executor and this project's on the same artifacts and compare metrics per slice, the
validation result, the files and the blessing; the fallbacks check that what this path
does not cover is named and left to TFX's executor.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import executor as stock
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tensorflow_model_analysis.proto import validation_result_pb2
from tfx.utils import proto_utils

from components import batched_evaluation, evaluator
from tests.components.taxi_examples import BEAM_ARGS, taxi_examples
from tests.conftest import executor_beam_args

LABEL = "tips_xf"


def export_model(path: Path, credit_weight: float, fare_weight: float,
                 regression: bool = False) -> Path:
    """A SavedModel as the Trainer lays it out: `<uri>/Format-Serving`, scoring tips from
    payment type and fare, with the label as `transform_features` outputs it: whether
    there was a tip, or (`regression`) the tip."""

    def parse(serialized: tf.Tensor) -> dict:
        parsed = tf.io.parse_example(serialized, {
            "fare": tf.io.VarLenFeature(tf.float32),
            "tips": tf.io.VarLenFeature(tf.float32),
            "payment_type": tf.io.VarLenFeature(tf.string)})
        # one value a row (the first; a missing value as 0 or ""), of static shape [n, 1]
        return {name: tf.ensure_shape(tf.sparse.to_dense(tf.sparse.reset_shape(
            tf.sparse.slice(value, [0, 0], [tf.shape(serialized)[0], 1]),
            [tf.shape(serialized, out_type=tf.int64)[0], 1])), [None, 1])
            for name, value in parsed.items()}

    module = tf.Module()
    module.credit = tf.Variable(credit_weight)
    module.fare = tf.Variable(fare_weight)
    spec = [tf.TensorSpec([None], tf.string, name="examples")]

    @tf.function(input_signature=spec)
    def predict_examples(examples):
        features = parse(examples)
        credit = tf.cast(tf.equal(features["payment_type"], "Credit Card"), tf.float32)
        score = module.credit * credit + module.fare * features["fare"]
        return {"outputs": score if regression else tf.sigmoid(score - 2.0)}

    @tf.function(input_signature=spec)
    def transform_features(examples):
        tips = parse(examples)["tips"]
        return {LABEL: tips if regression else tf.cast(tips > 0, tf.int64),
                "fare_xf": tips * 0.0}

    export_dir = path / "Format-Serving"
    tf.saved_model.save(module, str(export_dir), signatures={
        "predict_examples": predict_examples.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function()})
    return path


def eval_config(metrics: list[tfma.MetricConfig],
                slices: tuple[str, ...] = ("payment_type", "trip_start_hour")) -> str:
    """An EvalConfig as `pipeline.definition.builder.eval_config` makes it."""
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            model_type=tfma.TF_GENERIC, signature_name="predict_examples", label_key=LABEL,
            prediction_key="outputs", preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[name])
                                              for name in slices],
        metrics_specs=[tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name="ExampleCount")] + metrics)])
    return proto_utils.proto_to_json(config)


def threshold(metric: str, lower_bound: Optional[float] = None,
              max_regression: Optional[float] = None,
              upper_bound: Optional[float] = None) -> tfma.MetricConfig:
    """A metric with the builder's kind of thresholds, on the overall slice."""
    bounds = {name: {"value": value} for name, value in
              (("lower_bound", lower_bound), ("upper_bound", upper_bound)) if value is not None}
    value = tfma.GenericValueThreshold(**bounds) if bounds else None
    change = (tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                          absolute={"value": -max_regression})
              if max_regression is not None else None)
    return tfma.MetricConfig(class_name=metric, per_slice_thresholds=[
        tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec()],
            threshold=tfma.MetricThreshold(value_threshold=value, change_threshold=change))])


def run(executor_class: type, out: Path, examples, model: Path, config: str,
        baseline: Optional[Path] = None, beam_args: Optional[list[str]] = None):
    def artifact(kind, uri: Path):
        result = kind()
        result.uri = str(uri)
        return result

    inputs = {"examples": [examples], "model": [artifact(standard_artifacts.Model, model)]}
    if baseline is not None:
        inputs["baseline_model"] = [artifact(standard_artifacts.Model, baseline)]
    evaluation = artifact(standard_artifacts.ModelEvaluation, out / "evaluation")
    blessing = artifact(standard_artifacts.ModelBlessing, out / "blessing")
    executor = executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args or BEAM_ARGS, tmp_dir=str(out / "tmp")))
    executor.Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]},
                {"eval_config": config, "example_splits": "null"})
    return evaluation, blessing


def metric_values(evaluation) -> dict:
    values = {}
    for metrics in tfma.load_metrics(evaluation.uri):
        for entry in metrics.metric_keys_and_values:
            values[(tfma.slicer.deserialize_slice_key(metrics.slice_key), entry.key.name,
                    entry.key.model_name, entry.key.is_diff)] = entry.value.double_value.value
    return values


def validation(evaluation) -> validation_result_pb2.ValidationResult:
    """The validation result, its failing values rounded: sums of floats taken in another
    order (Beam's bundles, numpy's pairwise sums) differ in the last bits."""
    result = tfma.load_validation_result(evaluation.uri)
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            value = failure.metric_value.double_value
            value.value = round(value.value, 9)
    return result


def assert_same_outputs(stock_out, ours_out) -> None:
    (stock_evaluation, stock_blessing), (evaluation, blessing) = stock_out, ours_out
    expected, actual = metric_values(stock_evaluation), metric_values(evaluation)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(actual[key], value, abs_tol=1e-6) or (
            math.isnan(value) and math.isnan(actual[key])), key
    assert (validation(evaluation) == validation(stock_evaluation))
    assert sorted(p.name for p in Path(evaluation.uri).iterdir()) == sorted(
        p.name for p in Path(stock_evaluation.uri).iterdir())
    assert (json.loads((Path(evaluation.uri) / "eval_config.json").read_text())
            == json.loads((Path(stock_evaluation.uri) / "eval_config.json").read_text()))
    assert sorted(p.name for p in Path(blessing.uri).iterdir()) == sorted(
        p.name for p in Path(stock_blessing.uri).iterdir())
    for name in ("blessed", "current_model"):
        assert (blessing.get_custom_property(name)
                == stock_blessing.get_custom_property(name))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Examples (1,000 eval rows), a candidate and a worse baseline model."""
    root = tmp_path_factory.mktemp("evaluator")
    examples = taxi_examples(root / "data", rows=5000)
    candidate = export_model(root / "candidate", credit_weight=4.0, fare_weight=0.02)
    baseline = export_model(root / "baseline", credit_weight=0.5, fare_weight=0.01)
    return root, examples, candidate, baseline


def both(inputs, name: str, config: str, swap: bool = False, with_baseline: bool = False,
         our_beam_args: Optional[list[str]] = None):
    root, examples, candidate, baseline = inputs
    if swap:
        candidate, baseline = baseline, candidate
    kwargs = {"baseline": baseline} if with_baseline else {}
    return (run(stock.Executor, root / name / "stock", examples, candidate, config, **kwargs),
            run(evaluator.Executor, root / name / "ours", examples, candidate, config,
                beam_args=our_beam_args, **kwargs))


@pytest.mark.slow  # TFMA's Beam evaluator runs beside ours
def test_same_metrics_slices_and_failing_validation_without_baseline(
        inputs, caplog, monkeypatch) -> None:
    # several batches, scored by two threads, added up in order
    monkeypatch.setattr(batched_evaluation, "BATCH_SIZE", 128)
    threads = [*BEAM_ARGS, "--in_process_threads=2"]
    config = eval_config([threshold("BinaryAccuracy", lower_bound=0.5, max_regression=0.01),
                          threshold("AUC", lower_bound=0.99), threshold("Precision"),
                          threshold("Recall")])
    with caplog.at_level(logging.INFO, logger="absl"):
        stock_out, ours_out = both(inputs, "no_baseline", config, our_beam_args=threads)
    assert "Evaluating in this process (2 thread(s))" in caplog.text
    assert "Evaluator through Beam" not in caplog.text
    assert_same_outputs(stock_out, ours_out)
    slices = {key[0] for key in metric_values(ours_out[0])}
    assert () in slices and (("payment_type", "Cash"),) in slices
    assert any(key and key[0][0] == "trip_start_hour" and isinstance(key[0][1], int)
               for key in slices)
    result = tfma.load_validation_result(ours_out[0].uri)
    assert not result.validation_ok
    assert {v.metric_key.name for s in result.metric_validations_per_slice
            for v in s.failures} == {"auc"}
    assert (Path(ours_out[1].uri) / "NOT_BLESSED").exists()


@pytest.mark.slow  # TFMA's Beam evaluator runs beside ours
def test_change_thresholds_against_a_better_and_a_worse_baseline(inputs) -> None:
    config = eval_config([threshold("BinaryAccuracy", lower_bound=0.5, max_regression=0.01),
                          threshold("AUC", lower_bound=0.5, max_regression=0.01)],
                         slices=("payment_type",))
    stock_out, ours_out = both(inputs, "baseline_worse", config, with_baseline=True)
    assert_same_outputs(stock_out, ours_out)
    assert ours_out[1].get_int_custom_property("blessed") == 1
    assert any(key[3] for key in metric_values(ours_out[0]))  # diffs written

    stock_out, ours_out = both(inputs, "baseline_better", config, swap=True,
                               with_baseline=True)
    assert_same_outputs(stock_out, ours_out)
    assert ours_out[1].get_int_custom_property("blessed") == 0


@pytest.mark.slow  # TFMA's Beam evaluator runs beside ours
def test_regression_errors(inputs) -> None:
    root, examples, _, _ = inputs
    model = export_model(root / "regression", credit_weight=2.0, fare_weight=0.1,
                         regression=True)
    config = eval_config([threshold("MeanSquaredError", upper_bound=100.0),
                          threshold("MeanAbsoluteError", upper_bound=0.5),
                          threshold("MeanAbsolutePercentageError", upper_bound=1000.0)],
                         slices=("payment_type",))
    outputs = [run(executor, root / "regression_out" / name, examples, model, config)
               for name, executor in (("stock", stock.Executor), ("ours", evaluator.Executor))]
    assert_same_outputs(*outputs)
    names = {key[1] for key in metric_values(outputs[1][0])}
    assert {"mean_squared_error", "mean_absolute_error",
            "mean_absolute_percentage_error"} <= names


@pytest.mark.slow  # TFMA's Beam evaluator runs beside ours
def test_falls_back_to_beam_on_a_distributing_runner_and_says_why(inputs, caplog) -> None:
    root, examples, candidate, _ = inputs
    two_workers = executor_beam_args("--direct_running_mode=in_memory",
                                     "--direct_num_workers=2")
    with caplog.at_level(logging.INFO, logger="absl"):
        evaluation, blessing = run(evaluator.Executor, root / "two_workers", examples,
                                   candidate, eval_config([threshold("AUC", lower_bound=0.0)]),
                                   beam_args=two_workers)
    assert "Evaluator through Beam: a distributing Beam runner" in caplog.text
    assert tfma.load_metrics(evaluation.uri)
    assert blessing.get_int_custom_property("blessed") == 1


@pytest.mark.parametrize("metric", ["BinaryCrossentropy", "RootMeanSquaredError",
                                    "SparseCategoricalAccuracy"])
def test_a_keras_metric_is_left_to_beam_before_anything_is_written(inputs, tmp_path,
                                                                   metric) -> None:
    _, examples, candidate, _ = inputs
    model = standard_artifacts.Model()
    model.uri = str(candidate)
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    executor = evaluator.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=BEAM_ARGS, tmp_dir=str(tmp_path / "tmp")))
    reason = executor._evaluate_in_process(
        {"examples": [examples], "model": [model]}, {"evaluation": [evaluation]},
        {"eval_config": eval_config([threshold(metric, lower_bound=0.0)])})
    assert reason.startswith("metric combiner")
    assert not (tmp_path / "evaluation").exists()


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.cross_slicing_specs.add(), "cross slicing specs"),
    (lambda c: setattr(c.options.compute_confidence_intervals, "value", True),
     "confidence intervals"),
    (lambda c: c.slicing_specs.add(feature_keys=["a", "b"]), "a slicing spec with"),
    (lambda c: setattr(c.model_specs[0], "example_weight_key", "w"), "label, prediction"),
    (lambda c: setattr(c.model_specs[0], "model_type", tfma.TF_KERAS), "model_type"),
    (lambda c: c.metrics_specs[0].binarize.top_k_list.values.append(1), "a metrics spec"),
])
def test_configs_only_beam_handles_are_named(change, reason) -> None:
    config = tfma.EvalConfig()
    proto_utils.json_to_proto(eval_config([threshold("AUC", lower_bound=0.5)]), config)
    assert batched_evaluation.unsupported_config(config) is None
    change(config)
    assert batched_evaluation.unsupported_config(config).startswith(reason)
