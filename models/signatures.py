"""Serving signatures of the exported SavedModel.

- ``serving_default``: the raw features as named inputs (one ``[batch]`` tensor each), so a
  REST client sends ``{"instances": [{"fare": 12.5, "trip_start_hour": 19,
  "payment_type": "Cash"}]}`` as in the TensorFlow Serving docs.
- ``classify`` (classification) or ``regress`` (regression): serialized ``tf.Example``s
  under the input ``inputs``, with TF Serving's method names, so its Classify / Regress
  APIs work on the real server.
- ``predict_examples`` and ``transform_features``: serialized examples for TFMA (the model's
  raw output, and the transformed features that hold the label).

Every signature takes each feature in the type the training data has, as tf.Transform's
raw feature spec records it: integer columns int64, float columns float32, text string.
So one feature dict is a ``serving_default`` instance and a classify / regress example
alike; turning an integer category into the vocabulary's text happens in the Transform
graph, as it did when the vocabulary was built. A missing value is NaN (float) or ""
(text) in every signature, and an absent feature in a tf.Example; int64 has no such value,
so a missing integer is sent by leaving it out of a tf.Example (classify, regress,
predict_examples): ``serving_default`` needs every input, as TF Serving does.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_transform.saved import saved_transform_io_v2

from models import features as feature_lib

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
EXAMPLES_SIGNATURE = "predict_examples"
TRANSFORM_SIGNATURE = "transform_features"


def examples_signature_name(spec: feature_lib.FeatureSpec) -> str:
    """The tf.Example signature's name, after the TF Serving API it serves (classify or
    regress, by task)."""
    return "classify" if spec.label.is_classification else "regress"


def serving_input_dtype(raw_feature_spec: dict, name: str) -> tf.DType:
    """The dtype the data has: int64, float32 or string (a tf.Example's three kinds)."""
    return raw_feature_spec[name].dtype


def _is_missing(value: tf.Tensor) -> "tf.Tensor | None":
    """Where a value means "missing": NaN for floats, "" for text; None for integers."""
    if value.dtype.is_floating:
        return tf.math.is_nan(value)
    if value.dtype == tf.string:
        return tf.equal(value, "")
    return None


def _raw_from_serving_inputs(inputs: dict, names: Sequence[str],
                             raw_feature_spec: dict) -> dict:
    """Turns the ``[batch]`` serving inputs into the parsed form Transform saw.

    The inputs already have the raw dtypes. A missing value (NaN, or "") becomes an absent
    entry of a sparse feature, exactly as a missing CSV cell was, so the imputation learned
    by Transform applies to it.
    """
    raw = {}
    for name in names:
        value = inputs[name]
        feature = raw_feature_spec[name]
        missing = _is_missing(value)
        if isinstance(feature, tf.io.VarLenFeature):
            batch = tf.shape(value, out_type=tf.int64)[0]
            rows = (tf.expand_dims(tf.range(batch), 1) if missing is None
                    else tf.where(tf.math.logical_not(missing)))
            raw[name] = tf.SparseTensor(
                indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
                values=tf.gather_nd(value, rows), dense_shape=tf.stack([batch, 1]))
        else:  # a feature the schema requires: a missing value cannot be left out
            if missing is not None and value.dtype != tf.string:
                value = tf.where(missing, tf.zeros_like(value), value)
            raw[name] = tf.reshape(value, [-1, *feature.shape])
    return raw


def _without_missing(parsed: dict, names: Sequence[str]) -> dict:
    """Parsed tf.Examples with NaN and "" values dropped from sparse features.

    So a feature dict means the same in a tf.Example as in a ``serving_default`` request:
    NaN / "" is a missing value there too, like a feature left out.
    """
    result = dict(parsed)
    for name in names:
        value = parsed[name]
        if isinstance(value, tf.SparseTensor):
            missing = _is_missing(value.values)
            if missing is not None:
                result[name] = tf.sparse.retain(value, tf.math.logical_not(missing))
    return result


def _class_names(spec: feature_lib.FeatureSpec,
                 tf_transform_output: tft.TFTransformOutput) -> Sequence[str]:
    if spec.label.task == feature_lib.BINARY:
        return spec.label.binary_class_names
    return [v.decode() if isinstance(v, bytes) else v for v in
            tf_transform_output.vocabulary_by_name(feature_lib.LABEL_VOCABULARY)]


class ServingModule(tf.Module):
    """What is exported: the model's variables, the Transform graph and the signatures.

    Saving Keras objects makes TF trace them again for Keras reloading, which took most of
    the Trainer's time; serving needs only the signatures. So the module holds the model's
    variables and tf.Transform's own loader of the transform graph (what tf.Transform's
    Keras layer wraps), whose state is tracked so that saving keeps its vocabularies.
    """

    def __init__(self, model, transform_graph: saved_transform_io_v2.SavedModelLoader) -> None:
        super().__init__()
        self.model_variables = list(model.variables)
        self.transform_graph_state = transform_graph.__dict__
        self._apply_transform = transform_graph.apply_transform_model

    def transform(self, raw_features: dict) -> dict:
        """Raw features through the Transform graph, as in training (no skew)."""
        return self._apply_transform(raw_features)


def load_transform_graph(
        tf_transform_output: tft.TFTransformOutput) -> saved_transform_io_v2.SavedModelLoader:
    """tf.Transform's loader of the transform graph, to apply it in TF2 code.

    Loaded once, it serves the Trainer's input pipeline and the exported signatures, each
    use tracing the graph quickly; through the Keras layer of
    `TFTransformOutput.transform_features_layer()` the input pipelines took several times
    as long (docs/performance.md).
    """
    return saved_transform_io_v2.SavedModelLoader(tf_transform_output.transform_savedmodel_dir)


def build_signatures(model, tf_transform_output: tft.TFTransformOutput,
                     spec: feature_lib.FeatureSpec,
                     transform_graph: saved_transform_io_v2.SavedModelLoader
                     ) -> tuple[ServingModule, dict[str, Callable]]:
    """The module to save and its signatures, keyed by name, for `tf.saved_model.save`."""
    raw_feature_spec = tf_transform_output.raw_feature_spec()
    serving_raw_spec = {k: v for k, v in raw_feature_spec.items() if k != spec.label.column}
    module = ServingModule(model, transform_graph)
    input_names = list(model.input_names)
    class_names = tf.constant(list(_class_names(spec, tf_transform_output))
                              if spec.label.is_classification else [], dtype=tf.string)

    def predict(transformed: dict) -> tf.Tensor:
        return model({k: transformed[k] for k in input_names})

    def named_outputs(output: tf.Tensor) -> dict:
        if spec.label.task == feature_lib.REGRESSION:
            return {"outputs": tf.reshape(output, [-1])}
        if spec.label.task == feature_lib.BINARY:
            scores = tf.concat([1.0 - output, output], axis=1)
        else:
            scores = output
        batch = tf.shape(scores)[0]
        classes = tf.tile(tf.expand_dims(class_names, 0), tf.stack([batch, 1]))
        return {"classes": classes, "scores": scores}

    def parse(serialized: tf.Tensor, with_label: bool) -> dict:
        parsed = tf.io.parse_example(serialized,
                                     raw_feature_spec if with_label else serving_raw_spec)
        return _without_missing(parsed, spec.names)

    @tf.function(autograph=False, input_signature=[{
        name: tf.TensorSpec([None], serving_input_dtype(raw_feature_spec, name), name=name)
        for name in spec.names}])
    def serving_default(inputs):
        raw = _raw_from_serving_inputs(inputs, spec.names, raw_feature_spec)
        return named_outputs(predict(module.transform(raw)))

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def examples_api(inputs):
        return named_outputs(predict(module.transform(parse(inputs, with_label=False))))

    @tf.function(autograph=False,
                 input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(examples):
        return {"outputs": predict(module.transform(parse(examples, with_label=False)))}

    @tf.function(autograph=False,
                 input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return module.transform(parse(examples, with_label=True))

    return module, {
        "serving_default": serving_default.get_concrete_function(),
        examples_signature_name(spec): examples_api.get_concrete_function(),
        EXAMPLES_SIGNATURE: predict_examples.get_concrete_function(),
        TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
    }


def export(model, tf_transform_output: tft.TFTransformOutput, spec: feature_lib.FeatureSpec,
           export_dir: str, transform_graph: saved_transform_io_v2.SavedModelLoader) -> None:
    """Writes the serving SavedModel to `export_dir`."""
    module, functions = build_signatures(model, tf_transform_output, spec, transform_graph)
    tf.saved_model.save(module, export_dir, signatures=functions)
    set_method_names(export_dir, spec)
    write_warmup_requests(export_dir, spec, tf_transform_output.raw_feature_spec())


WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")


WARMUP_VALUES = {tf.float32: float("nan"), tf.string: b"", tf.int64: 0}


def write_warmup_requests(export_dir: str, spec: feature_lib.FeatureSpec,
                          raw_feature_spec: dict) -> None:
    """Writes TF Serving's warm-up file: one ``serving_default`` request, a one-row batch.

    A model server replays it when it loads the version, before the version answers, so
    the first real request does not pay for preparing the graph (~0.5 s here). Float and
    text inputs are "missing" (NaN / ""), integers 0 (int64 has no "missing"): values the
    signature accepts for any data set.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    for name in spec.names:
        dtype = serving_input_dtype(raw_feature_spec, name)
        request.inputs[name].CopyFrom(tf.make_tensor_proto([WARMUP_VALUES[dtype]],
                                                           dtype=dtype))
    record = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    folder = tf.io.gfile.join(export_dir, WARMUP_FILE[0])
    tf.io.gfile.makedirs(folder)
    with tf.io.TFRecordWriter(tf.io.gfile.join(folder, WARMUP_FILE[1])) as writer:
        writer.write(record.SerializeToString())


def set_method_names(export_dir: str, spec: feature_lib.FeatureSpec) -> None:
    """Marks the tf.Example signature as classify / regress in ``saved_model.pb``.

    TF2's saver writes every signature as "predict", but TF Serving's Classify and Regress
    APIs refuse a signature without their method name; TF's loaders ignore the field.
    """
    path = tf.io.gfile.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    method = CLASSIFY_METHOD if spec.label.is_classification else REGRESS_METHOD
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[examples_signature_name(spec)].method_name = method
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(saved_model.SerializeToString())
