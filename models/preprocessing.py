"""The Transform `preprocessing_fn`: features prepared inside the TensorFlow graph.

Because these operations run in the graph that Trainer exports, serving applies exactly
the same scaling, bucketing and vocabularies as training did.

Missing values are a normal part of real data (the taxi sample has thousands): numbers
are imputed with the mean of the present values, text becomes the empty string, which
the vocabulary treats like any other value. Every output is a dense ``[batch, 1]`` tensor.
"""
from __future__ import annotations

from typing import Any, Mapping, Union

import tensorflow as tf
import tensorflow_transform as tft

from models import features as feature_lib

Tensor = Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]

NUM_OOV_BUCKETS = 1


def to_dense_column(value: Tensor, default: Any) -> tf.Tensor:
    """A ``[batch, 1]`` dense tensor, filling absent values with `default`."""
    if isinstance(value, tf.RaggedTensor):
        value = value.to_sparse()
    if isinstance(value, tf.SparseTensor):
        batch = value.dense_shape[0]
        value = tf.sparse.to_dense(
            tf.SparseTensor(value.indices, value.values, tf.stack([batch, 1])),
            default_value=tf.cast(default, value.dtype) if value.dtype != tf.string else default)
    return tf.reshape(value, [-1, 1])


def as_float(value: Tensor) -> tf.Tensor:
    """Numbers as float32 with NaN where the value is missing."""
    if isinstance(value, (tf.SparseTensor, tf.RaggedTensor)):
        if isinstance(value, tf.RaggedTensor):
            value = value.to_sparse()
        value = tf.SparseTensor(value.indices, tf.cast(value.values, tf.float32),
                                value.dense_shape)
        return to_dense_column(value, float("nan"))
    return to_dense_column(tf.cast(value, tf.float32), float("nan"))


def as_text(value: Tensor) -> tf.Tensor:
    """Values as strings ("" where missing), so int and text categories share one path."""
    if isinstance(value, tf.RaggedTensor):
        value = value.to_sparse()
    if isinstance(value, tf.SparseTensor):
        values = value.values if value.dtype == tf.string else tf.strings.as_string(value.values)
        return to_dense_column(tf.SparseTensor(value.indices, values, value.dense_shape), "")
    dense = value if value.dtype == tf.string else tf.strings.as_string(value)
    return to_dense_column(dense, "")


def impute_mean(value: tf.Tensor) -> tf.Tensor:
    """Replaces NaN with the mean of the present values over the whole data set."""
    present = tf.math.logical_not(tf.math.is_nan(value))
    total = tft.sum(tf.where(present, value, tf.zeros_like(value)))
    count = tft.sum(tf.cast(present, tf.float32))
    mean = tf.math.divide_no_nan(total, count)
    return tf.where(present, value, tf.fill(tf.shape(value), mean))


def _label(value: Tensor, label: feature_lib.LabelSpec) -> tf.Tensor:
    if label.task == feature_lib.REGRESSION:
        return impute_mean(as_float(value))
    if label.task == feature_lib.BINARY:
        if label.positive_above is not None:
            number = as_float(value)
            positive = tf.math.greater(tf.where(tf.math.is_nan(number), tf.zeros_like(number),
                                                number), label.positive_above)
        elif isinstance(label.positive_value, str):
            positive = tf.equal(as_text(value), label.positive_value)
        else:
            positive = tf.equal(as_float(value), float(label.positive_value))
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
        outputs[feature_lib.transformed_name(name)] = tft.scale_to_z_score(
            impute_mean(as_float(inputs[name])))
    for name, buckets in spec.bucketized.items():
        outputs[feature_lib.transformed_name(name)] = tft.bucketize(
            impute_mean(as_float(inputs[name])), num_buckets=buckets)
    for name in spec.categorical:
        outputs[feature_lib.transformed_name(name)] = tft.compute_and_apply_vocabulary(
            as_text(inputs[name]), top_k=vocab_size, num_oov_buckets=NUM_OOV_BUCKETS,
            vocab_filename=name)
    if spec.label.column in inputs:
        outputs[spec.label_key] = _label(inputs[spec.label.column], spec.label)
    return outputs
