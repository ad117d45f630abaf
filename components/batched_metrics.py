"""TFMA's metrics from whole arrays of labels and predictions, without per-example Python.

TFMA's Beam evaluator feeds each example through `to_label_prediction_example_weight` and
each metric combiner's `add_input`; on 300,000 eval rows that Python is most of the
Evaluator's time. The TFMA-native metrics this pipeline lets users configure
(ExampleCount, BinaryAccuracy, AUC, Precision, Recall, MeanSquaredError,
MeanAbsoluteError, MeanAbsolutePercentageError) rest on TFMA combiners whose accumulators
are sums over examples: a count, a calibration histogram (AUC and the other metrics at
many thresholds), binary confusion matrices at a few thresholds (BinaryAccuracy at 0.5)
and the regression errors' totals. Those sums are
taken here with numpy over a slice's rows of each batch, then handed to TFMA in TFMA's own
accumulator format: the combiners' `extract_output`, the derived computations (the
metrics themselves), the baseline diffs and the private-metric filtering are TFMA's code,
so the values are TFMA's.

`unsupported_computation` names any computation outside that set (the Keras metrics
BinaryCrossentropy, RootMeanSquaredError and the multiclass ones among them); the caller
then keeps the stock evaluator.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

import numpy as np
from tensorflow_model_analysis.evaluators import (
    metrics_plots_and_validations_evaluator as tfma_evaluator)
from tensorflow_model_analysis.metrics import binary_confusion_matrices
from tensorflow_model_analysis.metrics import calibration_histogram
from tensorflow_model_analysis.metrics import example_count
from tensorflow_model_analysis.metrics import mean_regression_error as regression
from tensorflow_model_analysis.metrics import metric_specs
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util
from tensorflow_model_analysis.proto import config_pb2

MetricsDict = dict[metric_types.MetricKey, Any]
Computations = tfma_evaluator.MetricComputations


class ModelOutputs:
    """One model's labels and predictions for the rows of a batch: as the model gave them
    (`raw_*`, the dtypes TFMA's regression errors are computed in) and as float64 (what
    TFMA's `float()` of each example's values gives)."""

    __slots__ = ("raw_labels", "raw_predictions", "labels", "predictions", "_buckets")

    def __init__(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        self.raw_labels = labels
        self.raw_predictions = predictions
        self.labels = labels.astype(np.float64)
        self.predictions = predictions.astype(np.float64)
        self._buckets: dict[tuple[int, float, float], np.ndarray] = {}

    def histogram_buckets(self, num_buckets: int, left: float, width: float) -> np.ndarray:
        """Each row's calibration-histogram bucket, as TFMA's `_bucket_index` computes it
        (same float64 operations in the same order; int() truncation of a value >= 0).

        Raises:
            ValueError: a prediction is NaN (TFMA's own computation fails on it too).
        """
        key = (num_buckets, left, width)
        if key not in self._buckets:
            position = (self.predictions - left) / width * num_buckets + 1
            if np.isnan(position).any():  # TFMA's int(nan) fails the same way
                raise ValueError("cannot bucket a NaN prediction (or label) for the "
                                 "calibration histogram")
            self._buckets[key] = np.clip(position, 0, num_buckets + 1).astype(np.int64)
        return self._buckets[key]


def _rows(values: np.ndarray, rows: Optional[np.ndarray]) -> np.ndarray:
    return values if rows is None else values[rows]


def _check_fractional_labels(labels: np.ndarray) -> None:
    """TFMA's fractional-label rule: labels must lie within [0, 1] (it raises otherwise)."""
    if labels.size and not (metric_util.within_interval(float(labels.min()), 0.0, 1.0)
                            and metric_util.within_interval(float(labels.max()), 0.0, 1.0)):
        raise ValueError(f"label must be within [0, 1]: found labels in "
                         f"[{labels.min()}, {labels.max()}]")


class _ExampleCount:
    """`_ExampleCountCombiner`: without example weights, the number of examples (its keys
    are the combiner's own, from its `extract_output`)."""

    def __init__(self) -> None:
        self._count = 0.0

    def add(self, outputs: dict[str, ModelOutputs], num_rows: int,
            rows: Optional[np.ndarray]) -> None:
        self._count += float(num_rows if rows is None else len(rows))

    def accumulator(self) -> float:
        return self._count


class _CalibrationHistogram:
    """`_CalibrationHistogramCombiner`: per bucket, the sums of labels, predictions and
    examples (unit weights). With fractional labels TFMA splits an example into a
    negative of weight 1 - label and a positive of weight label; their sums are the same."""

    def __init__(self, combiner: calibration_histogram._CalibrationHistogramCombiner) -> None:
        self._model = combiner._key.model_name
        self._num_buckets = combiner._num_buckets
        self._left = combiner._left
        self._width = combiner._range
        self._fractional = combiner._fractional_labels
        self._by_prediction = combiner._prediction_based_bucketing
        size = self._num_buckets + 2
        self._labels = np.zeros(size)
        self._predictions = np.zeros(size)
        self._examples = np.zeros(size)

    def add(self, outputs: dict[str, ModelOutputs], num_rows: int,
            rows: Optional[np.ndarray]) -> None:
        model = outputs[self._model]
        labels = _rows(model.labels, rows)
        if self._fractional:
            _check_fractional_labels(labels)
        if self._by_prediction:
            buckets = _rows(model.histogram_buckets(
                self._num_buckets, self._left, self._width), rows)
        else:
            buckets = ModelOutputs(labels, labels).histogram_buckets(
                self._num_buckets, self._left, self._width)
        size = self._num_buckets + 2
        self._labels += np.bincount(buckets, weights=labels, minlength=size)
        self._predictions += np.bincount(
            buckets, weights=_rows(model.predictions, rows), minlength=size)
        self._examples += np.bincount(buckets, minlength=size)

    def accumulator(self) -> dict[int, calibration_histogram.Bucket]:
        return {int(i): calibration_histogram.Bucket(int(i), float(self._labels[i]),
                                                     float(self._predictions[i]),
                                                     float(self._examples[i]))
                for i in np.flatnonzero(self._examples)}


class _BinaryConfusionMatrices:
    """`_BinaryConfusionMatrixCombiner` (a few explicit thresholds, fractional labels).

    Rows are grouped by how many thresholds their prediction exceeds; within a group every
    comparison with a threshold comes out the same, so TFMA's own `add_input` receives one
    positive and one negative per group, weighted by the group's label sums, with one of
    the group's predictions standing for all.
    """

    def __init__(self, combiner: binary_confusion_matrices._BinaryConfusionMatrixCombiner
                 ) -> None:
        self._combiner = combiner
        self._model = combiner._key.model_name
        self._thresholds = np.sort(np.asarray(
            combiner._binary_confusion_matrices._thresholds, dtype=np.float64))
        groups = len(self._thresholds) + 1
        self._positives = np.zeros(groups)
        self._negatives = np.zeros(groups)
        self._present = np.zeros(groups, dtype=bool)
        self._representative = np.zeros(groups)

    def add(self, outputs: dict[str, ModelOutputs], num_rows: int,
            rows: Optional[np.ndarray]) -> None:
        model = outputs[self._model]
        labels = _rows(model.labels, rows)
        predictions = _rows(model.predictions, rows)
        _check_fractional_labels(labels)
        # how many thresholds each prediction exceeds (NaN exceeds none, as in TFMA)
        groups = np.where(np.isnan(predictions), 0,
                          np.searchsorted(self._thresholds, predictions, side="left"))
        size = len(self._positives)
        self._positives += np.bincount(groups, weights=labels, minlength=size)
        self._negatives += np.bincount(groups, weights=1.0 - labels, minlength=size)
        self._present[groups] = True
        self._representative[groups] = predictions

    def accumulator(self) -> Any:
        present = np.flatnonzero(self._present)
        matrices = self._combiner._binary_confusion_matrices
        return matrices.add_input(
            accumulator=matrices.create_accumulator(),
            labels=[1.0] * len(present) + [0.0] * len(present),
            predictions=[float(self._representative[i]) for i in present] * 2,
            example_weights=([float(self._positives[i]) for i in present]
                             + [float(self._negatives[i]) for i in present]),
            example_id=None)


def _absolute_error(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    return np.absolute(labels - predictions)


def _squared_error(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    # TFMA: np.linalg.norm of the one-value difference (sqrt of its square, in the
    # difference's dtype), squared as a Python float
    difference = labels - predictions
    return np.sqrt(difference * difference).astype(np.float64) ** 2


def _absolute_percentage_error(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    # TFMA: NaN (left out) where the label is 0
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = 100 * np.absolute((labels - predictions) / labels).astype(np.float64)
    return np.where(labels == 0, np.nan, errors)


_REGRESSION_ERRORS = {
    regression._MeanAbsoluteErrorCombiner: _absolute_error,
    regression._MeanSquaredErrorCombiner: _squared_error,
    regression._MeanAbsolutePercentageErrorCombiner: _absolute_percentage_error,
}


class _MeanRegressionError:
    """`_MeanRegressionErrorCombiner` subclasses: the sum of the per-example errors (in
    the dtypes TFMA computes them in) and the number of examples, NaN errors left out."""

    def __init__(self, combiner: regression._MeanRegressionErrorCombiner) -> None:
        self._model = combiner._metric_key.model_name
        self._error = _REGRESSION_ERRORS[type(combiner)]
        self._total_error = 0.0
        self._total_weight = 0.0

    def add(self, outputs: dict[str, ModelOutputs], num_rows: int,
            rows: Optional[np.ndarray]) -> None:
        model = outputs[self._model]
        # each error as the Python float TFMA adds up
        errors = self._error(_rows(model.raw_labels, rows),
                             _rows(model.raw_predictions, rows)).astype(np.float64)
        kept = ~np.isnan(errors)
        self._total_error += float(errors[kept].sum())
        self._total_weight += float(kept.sum())

    def accumulator(self) -> regression._MeanRegressionErrorAccumulator:
        return regression._MeanRegressionErrorAccumulator(
            total_example_weights=self._total_weight,
            total_regression_error=self._total_error)


def _default_inputs(computation: metric_types.MetricComputation) -> bool:
    """Whether the combiner sees TFMA's default StandardMetricInputs (labels, predictions,
    weights), possibly through the plain filtering preprocessor."""
    return all(type(p) is metric_types.StandardMetricInputsPreprocessor  # noqa: E721
               for p in computation.preprocessors or [])


def _accumulator_factory(computation: metric_types.MetricComputation
                         ) -> tuple[Optional[Callable[[], Any]], str]:
    """How to build the numpy accumulator of one TFMA combiner, or why it cannot be."""
    combiner = computation.combiner
    if not _default_inputs(computation):
        return None, f"{type(combiner).__name__} with preprocessors"
    key = getattr(combiner, "_key", None) or getattr(combiner, "_metric_key", None)
    if key is not None and (key.output_name or key.sub_key is not None
                            or key.aggregation_type is not None):
        return None, f"{key.name} per output, class or aggregation"
    if isinstance(combiner, example_count._ExampleCountCombiner):
        if combiner._output_name:
            return None, "ExampleCount per output"
        return _ExampleCount, ""
    if isinstance(combiner, calibration_histogram._CalibrationHistogramCombiner):
        if combiner._aggregation_type or combiner._class_weights:
            return None, "a calibration histogram with aggregation or class weights"
        return (lambda: _CalibrationHistogram(combiner)), ""
    if isinstance(combiner, binary_confusion_matrices._BinaryConfusionMatrixCombiner):
        if (combiner._example_id_key or combiner._aggregation_type
                or combiner._class_weights or not combiner._enable_fractional_labels
                or combiner._extract_label_prediction_and_weight
                is not metric_util.to_label_prediction_example_weight):
            return None, "binary confusion matrices with examples, aggregation or weights"
        return (lambda: _BinaryConfusionMatrices(combiner)), ""
    if type(combiner) in _REGRESSION_ERRORS:
        if combiner._aggregation_type or combiner._class_weights:
            return None, "a regression error with aggregation or class weights"
        return (lambda: _MeanRegressionError(combiner)), ""
    return None, f"metric combiner {type(combiner).__name__}"


def computations_for(eval_config: config_pb2.EvalConfig) -> Computations:
    """TFMA's computations for the config, de-duplicated and separated as its evaluator
    does (combiners, derived, cross-slice, confidence-interval derived)."""
    return tfma_evaluator._filter_and_separate_computations(
        metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config))


def unsupported_computation(computations: Computations) -> Optional[str]:
    """Names the first computation this module cannot accumulate from arrays, or None."""
    for computation in computations.non_derived_computations:
        factory, reason = _accumulator_factory(computation)
        if factory is None:
            return reason
    if computations.cross_slice_computations:
        return "cross-slice metrics"
    return None


class SliceAccumulators:
    """The accumulators of every combiner for one slice."""

    def __init__(self, computations: Computations) -> None:
        self._computations = computations
        self._accumulators = [_accumulator_factory(c)[0]()
                              for c in computations.non_derived_computations]

    def add(self, outputs: dict[str, ModelOutputs], num_rows: int,
            rows: Optional[np.ndarray]) -> None:
        """Adds a batch's rows of this slice (`rows` None: all `num_rows` rows)."""
        for accumulator in self._accumulators:
            accumulator.add(outputs, num_rows, rows)

    def combiner_outputs(self) -> MetricsDict:
        """What TFMA's combiners extract from the same sums."""
        result: MetricsDict = {}
        for computation, accumulator in zip(self._computations.non_derived_computations,
                                            self._accumulators):
            result.update(computation.combiner.extract_output(accumulator.accumulator()))
        return result


def _diff_metrics(metrics: MetricsDict, baseline_model_name: Optional[str]) -> MetricsDict:
    """The candidate-minus-baseline diffs TFMA's evaluator adds (its `add_diff_metrics`,
    a closure inside a Beam transform, hence restated)."""
    result = copy.copy(metrics)
    if not baseline_model_name:
        return result
    diffs = {}
    for key, value in result.items():
        if tfma_evaluator._is_private_metrics(key) or key.is_diff:
            continue
        baseline_key = key.make_baseline_key(baseline_model_name)
        if (key.model_name != baseline_model_name and baseline_key in result
                and tfma_evaluator._is_metric_diffable(value)):
            diffs[key.make_diff_key()] = value - result[baseline_key]
    result.update(diffs)
    return result


def finish_slice(computations: Computations, combiner_outputs: MetricsDict,
                 baseline_model_name: Optional[str]) -> MetricsDict:
    """A slice's metrics, plots and attributions from its combiner outputs, in TFMA's
    order: derived metrics, baseline diffs, confidence-interval derived, private removed."""
    result = copy.copy(combiner_outputs)
    for computation in computations.derived_computations:
        result.update(computation.result(result))
    result = _diff_metrics(result, baseline_model_name)
    for computation in computations.ci_derived_computations:
        result.update(computation.result(result))
    return tfma_evaluator._remove_private_metrics((), result)[1]


def split_by_kind(results: MetricsDict) -> Sequence[MetricsDict]:
    """(metrics, plots, attributions) of one slice, as TFMA's evaluator filters them."""
    return tuple(tfma_evaluator._filter_by_key_type(((), results), kind)[1]
                 for kind in (metric_types.MetricKey, metric_types.PlotKey,
                              metric_types.AttributionsKey))
