"""The Evaluator's work in this process, on large batches instead of one example at a time.

TFMA's Beam path unbatches every example after the model call and runs its slicing and
every metric combiner per example in Python: on 300,000 eval rows that is most of the
Evaluator's time, the model calls a small part (bench/scale, bench/evaluator; see
docs/performance.md). Here the eval split's serialized tf.Examples are read in batches of
`BATCH_SIZE`, each model's signatures run once per batch
(predictions from the configured signature on the serialized examples, labels from the
preprocessing signature that outputs the label key, as TFMA's extractors do), the slices
are found per batch (`batch_slicing`, which decodes only the slicing features), and
`batched_metrics` sums each slice's rows with numpy into TFMA's accumulators.

The signatures are called with keyword arguments. TFMA calls them positionally, which
TensorFlow first tries to bind by keyword and fails, formatting the whole input tensor
into the discarded error message (`Tensor.__repr__`, numpy's arrayprint), a measurable
part of TFMA's time on large data.

Model calls release the GIL, so with more than one thread (`components.parallelism`) the
next batches are scored while this thread adds up the last. Only a few batches are in
flight at a time: memory does not grow with the data.

`unsupported_config` and `model_signatures` name what this path does not cover; the
executor then runs the stock evaluator.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2

from components import batched_metrics, example_batches, parallelism
from components.batch_slicing import FeatureValues, SliceFeatureDecoder, SliceKey, column_slices

BATCH_SIZE = 8192


def unsupported_config(eval_config: config_pb2.EvalConfig) -> Optional[str]:
    """Names the first setting of the (defaults-filled) EvalConfig only TFMA's Beam path
    handles, or None."""
    options = eval_config.options
    if eval_config.cross_slicing_specs:
        return "cross slicing specs"
    if options.compute_confidence_intervals.value:
        return "confidence intervals"
    if options.min_slice_size.value > 1:
        return "min_slice_size"
    if options.disabled_outputs.values:
        return "disabled outputs"
    for spec in eval_config.model_specs:
        if spec.model_type != tfma.TF_GENERIC:
            return f"model_type {spec.model_type or 'unset'} (only {tfma.TF_GENERIC})"
        if not (spec.signature_name and spec.label_key and spec.prediction_key):
            return "a model spec without signature_name, label_key and prediction_key"
        if (spec.label_keys or spec.prediction_keys or spec.example_weight_key
                or spec.example_weight_keys or spec.HasField("padding_options")):
            return "label, prediction or example-weight key maps, weights or padding"
    for spec in eval_config.slicing_specs:
        if spec.feature_values or spec.slice_keys_sql or len(spec.feature_keys) > 1:
            return "a slicing spec with values, SQL or several features"
    for spec in eval_config.metrics_specs:
        if (spec.query_key or spec.output_names or spec.output_weights
                or spec.HasField("binarize") or spec.HasField("aggregate")):
            return "a metrics spec with a query key, outputs, binarization or aggregation"
    return None


@dataclasses.dataclass(frozen=True)
class _Signature:
    function: Any
    input_name: str

    def __call__(self, serialized: tf.Tensor) -> dict:
        return self.function(**{self.input_name: serialized})


@dataclasses.dataclass(frozen=True)
class ModelSignatures:
    """What TFMA's extractors call for one model: the prediction and label sources."""
    name: str  # the key TFMA's metrics use for this model ('' when it is the only one)
    predict: _Signature
    prediction_key: str
    preprocess: _Signature
    label_key: str

    def outputs(self, serialized: tf.Tensor, num_rows: int) -> batched_metrics.ModelOutputs:
        """The model's predictions and the transformed labels for a batch of serialized
        tf.Examples, one value per row, as TFMA's extractors would give them.

        Raises:
            ValueError: the prediction or the label has other than one value per example
                (a multi-output head this path does not evaluate).
        """
        predictions = self.predict(serialized)[self.prediction_key]
        labels = self.preprocess(serialized)[self.label_key]
        return batched_metrics.ModelOutputs(
            labels=_one_per_row(labels, num_rows, self.label_key),
            predictions=_one_per_row(predictions, num_rows, self.prediction_key))


def _one_per_row(tensor: tf.Tensor, num_rows: int, name: str) -> np.ndarray:
    values = tensor.numpy()
    if values.size != num_rows:
        raise ValueError(f"'{name}' has {values.size} values for {num_rows} examples; "
                         "the in-process evaluation expects one per example")
    return values.reshape(num_rows)


def _serialized_input(function: Any) -> Optional[str]:
    """The name of a signature's only input when it is a batch of strings (serialized
    tf.Examples, which TFMA feeds such a signature), else None."""
    args, kwargs = function.structured_input_signature
    if args or len(kwargs) != 1:
        return None
    (name, spec), = kwargs.items()
    return name if isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string else None


def _one_value_output(function: Any, key: str) -> bool:
    """Whether the signature outputs `key` as a dense numeric tensor of one value a row."""
    outputs = function.structured_outputs
    spec = outputs.get(key) if isinstance(outputs, dict) else None
    if not isinstance(spec, tf.TensorSpec) or spec.dtype == tf.string:
        return False
    shape = spec.shape
    return shape.rank == 1 or (shape.rank == 2 and shape[1] == 1)


def model_signatures(eval_config: config_pb2.EvalConfig, loaded_models: dict[str, Any]
                     ) -> tuple[list[ModelSignatures], Optional[str]]:
    """Each model's signatures, or the reason they are not ones this path can call.

    Args:
      eval_config: the defaults-filled EvalConfig. None of the features its slicing specs
        name may be a preprocessing output: TFMA would look them up among the transformed
        features first.
      loaded_models: the loaded SavedModels by model spec name.
    """
    multi_model = len(eval_config.model_specs) > 1
    sliced_on = set(slice_features(eval_config))
    result = []
    for spec in eval_config.model_specs:
        signatures = loaded_models[spec.name].signatures
        predict = signatures.get(spec.signature_name)
        predict_input = _serialized_input(predict) if predict is not None else None
        if predict_input is None:
            return [], f"signature {spec.signature_name!r} does not take serialized examples"
        if not _one_value_output(predict, spec.prediction_key):
            return [], f"prediction {spec.prediction_key!r} is not one number per example"
        with_label = []  # (function, its serialized input)
        for name in spec.preprocessing_function_names:
            function = signatures.get(name)
            function_input = _serialized_input(function) if function is not None else None
            if function_input is None:
                return [], f"preprocessing function {name!r} does not take serialized examples"
            outputs = function.structured_outputs
            outputs = set(outputs) if isinstance(outputs, dict) else set()
            if sliced_on & outputs:
                return [], "a slice on a transformed feature"
            if spec.label_key in outputs:
                with_label.append((function, function_input))
        if len(with_label) != 1 or not _one_value_output(with_label[0][0], spec.label_key):
            return [], (f"label {spec.label_key!r} is not one number per example of one "
                        "preprocessing function")
        result.append(ModelSignatures(
            name=spec.name if multi_model else "",
            predict=_Signature(predict, predict_input),
            prediction_key=spec.prediction_key,
            preprocess=_Signature(*with_label[0]),
            label_key=spec.label_key))
    return result, None


def slice_features(eval_config: config_pb2.EvalConfig) -> list[str]:
    return sorted({key for spec in eval_config.slicing_specs for key in spec.feature_keys})


def serialized_batches(patterns: Iterable[str]) -> Iterator[np.ndarray]:
    """The serialized examples of the files matching `patterns`, in batches, in order
    (`example_batches`' C++ reader, compression detected from the files)."""
    return example_batches.raw_batches(example_batches.matching_files(patterns), BATCH_SIZE,
                                       prefetch=2)


@dataclasses.dataclass
class ScoredBatch:
    """A batch's model outputs and slices (rows None: the overall slice, every row)."""
    num_rows: int
    outputs: dict[str, batched_metrics.ModelOutputs]
    slices: list[tuple[SliceKey, Optional[np.ndarray]]]


class BatchScorer:
    """Turns a batch of serialized examples (and their decoded slicing features) into a
    `ScoredBatch`: model calls and slicing, no Python per example; safe to run in several
    threads at once."""

    def __init__(self, models: list[ModelSignatures],
                 slicing_specs: Iterable[config_pb2.SlicingSpec]) -> None:
        self._models = models
        # TFMA keys an example once per distinct slice, however many specs produce it.
        self._columns = list(dict.fromkeys(
            spec.feature_keys[0] if spec.feature_keys else None for spec in slicing_specs))

    def __call__(self, serialized: np.ndarray,
                 features: dict[str, FeatureValues]) -> ScoredBatch:
        num_rows = len(serialized)
        tensor = tf.constant(serialized, dtype=tf.string)
        outputs = {model.name: model.outputs(tensor, num_rows) for model in self._models}
        slices: list[tuple[SliceKey, Optional[np.ndarray]]] = []
        for column in self._columns:
            if column is None:
                slices.append(((), None))
            else:
                slices.extend(column_slices(column, features.get(column)))
        return ScoredBatch(num_rows, outputs, slices)


def _scored(batches: Iterable[np.ndarray], decoder: SliceFeatureDecoder,
            scorer: BatchScorer, threads: int) -> Iterator[ScoredBatch]:
    """The scored batches in input order; with several threads, up to `threads` + 1 are
    being scored while the caller consumes the oldest (the slicing features are decoded in
    the caller's thread)."""
    return parallelism.ordered_map(
        scorer, ((serialized, decoder(serialized)) for serialized in batches), threads,
        "evaluator")


def evaluate(batches: Iterable[np.ndarray], eval_config: config_pb2.EvalConfig,
             models: list[ModelSignatures],
             computations: batched_metrics.Computations, baseline_model_name: Optional[str],
             threads: int) -> list[tuple[SliceKey, batched_metrics.MetricsDict]]:
    """Every slice's metrics, plots and attributions (TFMA's keys and values), from
    batches of serialized tf.Examples."""
    decoder = SliceFeatureDecoder(slice_features(eval_config))
    scorer = BatchScorer(models, eval_config.slicing_specs)
    accumulators: dict[SliceKey, batched_metrics.SliceAccumulators] = {}
    for scored in _scored(batches, decoder, scorer, threads):
        for slice_key, rows in scored.slices:
            if slice_key not in accumulators:
                accumulators[slice_key] = batched_metrics.SliceAccumulators(computations)
            accumulators[slice_key].add(scored.outputs, scored.num_rows, rows)
    return [(slice_key, batched_metrics.finish_slice(
                computations, accumulator.combiner_outputs(), baseline_model_name))
            for slice_key, accumulator in accumulators.items()]
