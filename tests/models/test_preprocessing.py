"""preprocessing_fn run by tf.Transform (Beam, in memory) on rows with missing values."""
from __future__ import annotations

import math

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from models import features, preprocessing

CUSTOM_CONFIG = {
    "features": {"numeric": ["fare"], "bucketized": {"lat": 2},
                 "categorical": ["company", "area"]},
    "label": {"column": "tips", "task": features.BINARY, "positive_above": 0.0,
              "positive_value": None, "class_names": None},
    "training": {"vocab_size": 10},
}
ROWS = [
    {"fare": [10.0], "lat": [41.0], "company": [b"A"], "area": [8], "tips": [1.0]},
    {"fare": [20.0], "lat": [42.0], "company": [b"A"], "area": [8], "tips": [0.0]},
    {"fare": [30.0], "lat": [43.0], "company": [b"B"], "area": [9], "tips": [2.5]},
    {"fare": [], "lat": [], "company": [], "area": [], "tips": [0.0]},  # all features missing
]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    feature_spec = {"fare": tf.io.VarLenFeature(tf.float32),
                    "lat": tf.io.VarLenFeature(tf.float32),
                    "company": tf.io.VarLenFeature(tf.string),
                    "area": tf.io.VarLenFeature(tf.int64),
                    "tips": tf.io.VarLenFeature(tf.float32)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    temp = str(tmp_path_factory.mktemp("tft"))
    with tft_beam.Context(temp_dir=temp, force_tf_compat_v1=False):
        (data, _), transform_fn = (ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, CUSTOM_CONFIG))
        transform_dir = str(tmp_path_factory.mktemp("transform_fn"))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    return data, tft.TFTransformOutput(transform_dir)


def column(data, name):
    return [row[name].tolist()[0] if hasattr(row[name], "tolist") else row[name]
            for row in data]


def test_numeric_is_z_scored_and_missing_becomes_the_mean(transformed):
    fare = column(transformed[0], "fare_xf")
    assert fare[0] == pytest.approx(-math.sqrt(1.5), rel=1e-4)
    assert fare[1] == pytest.approx(0.0, abs=1e-6)
    assert fare[3] == 0.0  # missing: the mean, which is 0 after scaling


def test_bucketized_missing_value_gets_its_own_bucket(transformed):
    lat = column(transformed[0], "lat_xf")
    assert set(lat[:3]) <= {0, 1} and lat[0] == 0 and lat[2] == 1
    assert lat[3] == 2  # num_buckets


def test_categorical_vocabulary_covers_text_and_integers(transformed):
    data, output = transformed
    company = column(data, "company_xf")
    assert company[0] == company[1] != company[2]
    assert set(output.vocabulary_by_name("area")) == {b"8", b"9"}
    assert set(output.vocabulary_by_name("company")) == {b"A", b"B"}
    # a missing value lands in the out-of-vocabulary bucket, after the vocabulary
    assert company[3] == 2 and column(data, "area_xf")[3] == 2


def test_binary_label_from_a_numeric_threshold(transformed):
    assert column(transformed[0], "tips_xf") == [1, 0, 1, 0]


def test_outputs_are_dense_columns(transformed):
    schema = transformed[1].transformed_feature_spec()
    assert all(isinstance(spec, tf.io.FixedLenFeature) and list(spec.shape) == [1]
               for spec in schema.values())
