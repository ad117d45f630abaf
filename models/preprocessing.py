"""The Transform `preprocessing_fn`: features prepared inside the TensorFlow graph.

Because these operations run in the graph that Trainer exports, serving applies exactly
the same scaling, bucketing and vocabularies as training did.

Missing values are a normal part of real data (the taxi sample has thousands):
- numeric: z-scored over the present values, and a missing value becomes 0, the mean;
- bucketized: quantile buckets over the present values, and a missing value gets a bucket
  of its own (index `num_buckets`), so the model can learn what absence means;
- categorical: the empty string, which tf.Transform keeps out of vocabularies, so a
  missing value shares the out-of-vocabulary bucket with values never seen in training.

Vocabularies use tf.Transform's approximate (Misra-Gries) analyzer: it is exact whenever a
column has at most `vocab_size` distinct values, and otherwise keeps the `vocab_size` most
frequent within the documented error bound. Unlike the exact analyzer, which is a Beam
pipeline of its own per column, it is a combiner that tf.Transform packs with the others
into one pass, which cut Transform's time by more than a third (bench/pipeline; see
docs/performance.md).

Every analyzer reads the raw columns directly, so tf.Transform needs one pass over the
data (no analyzer depends on another's result). Every output is a dense [batch, 1] tensor.
"""
from __future__ import annotations

from typing import Any, Mapping, Union

import tensorflow as tf
import tensorflow_transform as tft

from models import features as feature_lib

Tensor = Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]

NUM_OOV_BUCKETS = 1


def present_values(value: Tensor) -> tf.SparseTensor:
    """The column as a [batch, 1] SparseTensor holding only the values that are present."""
    if isinstance(value, tf.RaggedTensor):
        value = value.to_sparse()
    if isinstance(value, tf.SparseTensor):
        return tf.SparseTensor(value.indices, value.values,
                               tf.stack([value.dense_shape[0], tf.constant(1, tf.int64)]))
    dense = tf.reshape(value, [-1, 1])
    rows = tf.range(tf.shape(dense, out_type=tf.int64)[0])
    return tf.SparseTensor(tf.stack([rows, tf.zeros_like(rows)], axis=1),
                           tf.reshape(dense, [-1]), tf.shape(dense, out_type=tf.int64))


def densify(value: tf.SparseTensor, default: Any) -> tf.Tensor:
    """The column as a dense tensor, `default` (cast to its dtype) where a value is missing."""
    return tf.sparse.to_dense(value, default_value=tf.cast(default, value.dtype)
                              if value.dtype != tf.string else default)


def as_float(value: Tensor) -> tf.SparseTensor:
    """The present values as float32: z-scores, buckets and label thresholds need floats,
    whether the column holds ints or floats."""
    sparse = present_values(value)
    return tf.SparseTensor(sparse.indices, tf.cast(sparse.values, tf.float32),
                           sparse.dense_shape)


def as_text(value: Tensor) -> tf.Tensor:
    """Values as a dense [batch, 1] string tensor, "" where missing."""
    sparse = present_values(value)
    if sparse.dtype != tf.string:
        sparse = tf.SparseTensor(sparse.indices, tf.strings.as_string(sparse.values),
                                 sparse.dense_shape)
    return densify(sparse, "")


def _label(value: Tensor, label: feature_lib.LabelSpec) -> tf.Tensor:
    if label.task == feature_lib.REGRESSION:
        return densify(as_float(value), 0.0)
    if label.task == feature_lib.BINARY:
        if label.positive_above is not None:
            number = densify(as_float(value), float("-inf"))
            positive = tf.math.greater(number, label.positive_above)
        elif isinstance(label.positive_value, str):
            positive = tf.equal(as_text(value), label.positive_value)
        else:
            positive = tf.equal(densify(as_float(value), float("nan")),
                                float(label.positive_value))
        return tf.cast(positive, tf.int64)
    return tft.compute_and_apply_vocabulary(
        as_text(value), vocab_filename=feature_lib.LABEL_VOCABULARY, num_oov_buckets=0,
        default_value=-1)


def preprocessing_fn(inputs: Mapping[str, Tensor],
                     custom_config: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    """tf.Transform entry point; `custom_config` is `PipelineConfig.model_custom_config()`."""
    spec = feature_lib.FeatureSpec.from_custom_config(custom_config)
    vocab_size = int(custom_config["training"]["vocab_size"])
    outputs: dict[str, tf.Tensor] = {}
    for name in spec.numeric:
        outputs[feature_lib.transformed_name(name)] = densify(
            tft.scale_to_z_score(as_float(inputs[name])), 0.0)
    for name, buckets in spec.bucketized.items():
        outputs[feature_lib.transformed_name(name)] = densify(
            tft.bucketize(as_float(inputs[name]), num_buckets=buckets), buckets)
    for name in spec.categorical:
        outputs[feature_lib.transformed_name(name)] = (
            tft.experimental.compute_and_apply_approximate_vocabulary(
                as_text(inputs[name]), top_k=vocab_size, num_oov_buckets=NUM_OOV_BUCKETS,
                vocab_filename=name))
    if spec.label.column in inputs:
        outputs[spec.label_key] = _label(inputs[spec.label.column], spec.label)
    return outputs
