"""The Keras model and the Trainer's `run_fn`.

The network is deliberately plain (a wide-and-deep style MLP): numeric inputs as they come
from Transform (z-scored), bucketized inputs one-hot, categorical inputs embedded. Its
shape comes from the declared features and `training:` hyper-parameters, so bringing your
own data needs no change here.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx_bsl.public import tfxio

from models import features as feature_lib
from models import preprocessing, signatures

SHUFFLE_BUFFER = 10_000  # examples; as TFX's dataset factory shuffled before


def build_keras_model(spec: feature_lib.FeatureSpec, training: Mapping[str, Any],
                      vocabulary_sizes: Mapping[str, int],
                      num_classes: Optional[int] = None) -> keras.Model:
    """The network over the transformed features (uncompiled: `train` owns the loop).

    `vocabulary_sizes` maps each categorical column to its vocabulary size (without OOV);
    `num_classes` is needed for multiclass classification only.

    Raises:
        ValueError: the task is multiclass classification and `num_classes` is missing or
            below 2 (the label vocabulary found fewer than two classes).
        KeyError: a categorical column has no entry in `vocabulary_sizes`, or `training`
            lacks `embedding_dim` or `hidden_units`.
    """
    inputs, encoded = {}, []
    for name in spec.numeric:
        key = feature_lib.transformed_name(name)
        inputs[key] = keras.Input(shape=(1,), name=key, dtype=tf.float32)
        encoded.append(inputs[key])
    for name, buckets in spec.bucketized.items():
        key = feature_lib.transformed_name(name)
        inputs[key] = keras.Input(shape=(1,), name=key, dtype=tf.int64)
        # One more token than buckets: Transform gives missing values a bucket of their own.
        encoded.append(keras.layers.CategoryEncoding(num_tokens=buckets + 1,
                                                     output_mode="one_hot")(inputs[key]))
    for name in spec.categorical:
        key = feature_lib.transformed_name(name)
        inputs[key] = keras.Input(shape=(1,), name=key, dtype=tf.int64)
        size = int(vocabulary_sizes[name]) + preprocessing.NUM_OOV_BUCKETS
        embedded = keras.layers.Embedding(size, int(training["embedding_dim"]))(inputs[key])
        encoded.append(keras.layers.Flatten()(embedded))

    hidden = encoded[0] if len(encoded) == 1 else keras.layers.concatenate(encoded)
    for units in training["hidden_units"]:
        hidden = keras.layers.Dense(int(units), activation="relu")(hidden)

    if spec.label.task == feature_lib.BINARY:
        output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    elif spec.label.task == feature_lib.MULTICLASS:
        if not num_classes or num_classes < 2:
            raise ValueError(f"multiclass classification needs >= 2 classes, got {num_classes}")
        output = keras.layers.Dense(num_classes, activation="softmax")(hidden)
    else:
        output = keras.layers.Dense(1)(hidden)
    return keras.Model(inputs=inputs, outputs=output)


def objective(spec: feature_lib.FeatureSpec) -> tuple[keras.losses.Loss, keras.metrics.Metric]:
    """The loss to minimise and the metric to report, by task."""
    if spec.label.task == feature_lib.BINARY:
        return keras.losses.BinaryCrossentropy(), keras.metrics.BinaryAccuracy()
    if spec.label.task == feature_lib.MULTICLASS:
        return (keras.losses.SparseCategoricalCrossentropy(),
                keras.metrics.SparseCategoricalAccuracy())
    return keras.losses.MeanSquaredError(), keras.metrics.MeanAbsoluteError()


def train(model: keras.Model, spec: feature_lib.FeatureSpec, train_data: tf.data.Dataset,
          eval_data: tf.data.Dataset, train_steps: int, eval_steps: int,
          learning_rate: float) -> dict[str, float]:
    """Trains for `train_steps` batches and returns the eval loss and metric.

    A plain loop with graph-compiled steps instead of `Model.fit`: fit's autograph
    conversion of Keras internals took longer than the training itself.
    The training loop itself runs inside the graph (one call for every step), which saves
    the per-step Python round trip.
    """
    loss_fn, metric = objective(spec)
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)  # slot variables exist before the loop
    label_dtype = tf.int64 if spec.label.task == feature_lib.MULTICLASS else tf.float32

    def train_step(features, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.cast(labels, label_dtype), model(features, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    @tf.function(autograph=False)
    def train_loop(batches, steps):
        def body(step):
            train_step(*batches.get_next())
            return (step + 1,)

        return tf.while_loop(lambda step: step < steps, body, (tf.constant(0),))

    @tf.function(autograph=False, reduce_retracing=True)
    def eval_step(features, labels):
        predictions = model(features, training=False)
        metric.update_state(tf.cast(labels, label_dtype), predictions)
        return loss_fn(tf.cast(labels, label_dtype), predictions)

    train_loop(iter(train_data), tf.constant(train_steps))
    losses = [float(eval_step(features, labels))
              for features, labels in eval_data.take(eval_steps)]
    results = {"eval_loss": sum(losses) / max(len(losses), 1),
               f"eval_{metric.name}": float(metric.result())}
    logging.info("Training finished: %s", results)
    return results


def _transformed_batches(file_pattern, data_accessor,
                         tf_transform_output: tft.TFTransformOutput, transform_graph,
                         label_key: str, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    """One pass over the raw examples as transformed (features, label) batches.

    Transform writes no transformed copy of the data (writing one cost a third of its
    time): the transform graph runs here, in tf.data's background threads, the same graph
    the serving signatures apply.
    """
    raw = data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, num_epochs=1, shuffle=shuffle),
        tf_transform_output.raw_metadata.schema)

    @tf.autograph.experimental.do_not_convert  # a plain graph call: nothing to convert
    def features_and_label(raw_features: dict) -> tuple[dict, tf.Tensor]:
        transformed = transform_graph.apply_transform_model(raw_features)
        return transformed, transformed.pop(label_key)

    return raw.map(features_and_label, num_parallel_calls=tf.data.AUTOTUNE)


def training_batches(transformed: tf.data.Dataset, cache_file: str,
                     batch_size: int) -> tf.data.Dataset:
    """Endless batches, reshuffled each epoch, transformed once (cached in `cache_file`).

    The cache is a local file, not memory, so the training data need not fit in RAM.
    """
    return (transformed.cache(cache_file).unbatch().shuffle(SHUFFLE_BUFFER)
            .batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE))


def vocabulary_sizes(spec: feature_lib.FeatureSpec,
                     tf_transform_output: tft.TFTransformOutput) -> dict[str, int]:
    """Each categorical column's vocabulary size as Transform computed it, which sizes
    its embedding."""
    return {name: tf_transform_output.vocabulary_size_by_name(name)
            for name in spec.categorical}


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: train through Transform's graph and export for serving.

    Raises:
        ValueError: a multiclass label whose vocabulary has fewer than two classes (see
            `build_keras_model`); the Trainer fails before training.
    """
    spec = feature_lib.FeatureSpec.from_custom_config(fn_args.custom_config)
    training = fn_args.custom_config["training"]
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(training["batch_size"])

    num_classes = None
    if spec.label.task == feature_lib.MULTICLASS:
        num_classes = tf_transform_output.vocabulary_size_by_name(
            feature_lib.LABEL_VOCABULARY)
    model = build_keras_model(spec, training, vocabulary_sizes(spec, tf_transform_output),
                              num_classes)

    transform_graph = signatures.load_transform_graph(tf_transform_output)

    def batches(files, shuffle: bool) -> tf.data.Dataset:
        return _transformed_batches(files, fn_args.data_accessor, tf_transform_output,
                                    transform_graph, spec.label_key, batch_size, shuffle)

    # Training data is shuffled after its cache, anew each epoch (`training_batches`);
    # the eval steps take a shuffled sample of the eval split, as TFX's reader did.
    train_data = batches(fn_args.train_files, shuffle=False)
    eval_data = batches(fn_args.eval_files, shuffle=True)
    with tempfile.TemporaryDirectory(prefix="transformed-") as cache_dir:
        train(model, spec,
              training_batches(train_data, os.path.join(cache_dir, "train"), batch_size),
              eval_data.repeat(), fn_args.train_steps, fn_args.eval_steps,
              float(training["learning_rate"]))

    signatures.export(model, tf_transform_output, spec, fn_args.serving_model_dir,
                      transform_graph)
