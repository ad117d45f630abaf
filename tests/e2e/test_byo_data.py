"""Bring your own data: a CSV with other columns trains, evaluates and pushes by editing
the config alone (numeric and text features, missing values, text labels, 3 classes)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from components import versioned_pusher
from pipeline.definition.config import load_config
from pipeline.local.run import run_pipeline
from tests.conftest import write_config

pytestmark = pytest.mark.slow

FRUIT_CONFIG = {
    "pipeline": {"name": "fruit-classifier"},
    "data": {"input_base": "data", "span_pattern": "day-{SPAN}/*.csv"},
    "features": {"numeric": ["weight_g", "diameter_cm"], "categorical": ["colour", "origin"]},
    "label": {"column": "fruit", "task": "multiclass_classification"},
    "training": {"train_steps": 300, "eval_steps": 10, "batch_size": 32,
                 "learning_rate": 0.01, "hidden_units": [16]},
    "evaluation": {"thresholds": [{"metric": "SparseCategoricalAccuracy", "lower_bound": 0.7}]},
    "serving": {"model_name": "fruit"},
}


def write_fruit_csv(path: Path, rows: int, seed: int) -> None:
    """Fruit whose kind follows from colour and weight, with gaps like real data."""
    rng = np.random.default_rng(seed)
    kinds = {"apple": ("red", 150, 7.5), "orange": ("orange", 200, 8.5),
             "banana": ("yellow", 120, 3.5)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "weight_g", "diameter_cm", "colour", "origin", "fruit"])
        for index in range(rows):
            fruit = rng.choice(list(kinds))
            colour, weight, diameter = kinds[fruit]
            writer.writerow([
                index,
                "" if rng.random() < 0.1 else round(rng.normal(weight, 15), 1),
                round(rng.normal(diameter, 0.5), 2),
                "" if rng.random() < 0.1 else colour,
                rng.choice(["spain", "chile", "kenya"]),
                fruit])


def test_new_dataset_trains_and_pushes_from_config_alone(workspace: Path):
    write_fruit_csv(workspace / "data" / "day-1" / "fruit.csv", rows=1200, seed=0)
    raw = {}
    for section, values in FRUIT_CONFIG.items():
        raw[section] = dict(values)
    config = load_config(write_config(workspace, base=raw, changes={
        "pipeline.beam_args": ["--direct_running_mode=in_memory", "--direct_num_workers=1"]}))
    report = run_pipeline(config)

    assert report.succeeded, report.error
    assert report.blessed is True, [c.failures for c in report.metrics]
    assert report.metrics[0].value > 0.7
    assert report.pushed_version == "1"
    assert config.serving_model_dir.endswith(os.path.join("serving_models", "fruit"))
    assert versioned_pusher.existing_versions(config.serving_model_dir) == [1]

    import tensorflow as tf

    serving = tf.saved_model.load(os.path.join(config.serving_model_dir, "1")).signatures[
        "serving_default"]
    outputs = serving(weight_g=tf.constant([120.0, float("nan")]),
                      diameter_cm=tf.constant([3.4, 8.4]),
                      colour=tf.constant(["yellow", "orange"]),
                      origin=tf.constant(["kenya", ""]))
    classes = [[c.decode() for c in row] for row in outputs["classes"].numpy()]
    assert sorted(classes[0]) == ["apple", "banana", "orange"]
    best = [row[int(np.argmax(scores))] for row, scores in zip(classes, outputs["scores"].numpy())]
    assert best == ["banana", "orange"]


HOUSE_CONFIG = {
    "pipeline": {"name": "house-prices"},
    "data": {"input_base": "data", "span_pattern": "week-{SPAN}/*.csv"},
    "features": {"numeric": ["area_m2", "rooms"], "categorical": ["district", "built"]},
    "label": {"column": "price", "task": "regression"},
    "training": {"train_steps": 300, "eval_steps": 10, "batch_size": 32,
                 "learning_rate": 0.01, "hidden_units": [16]},
    "evaluation": {"thresholds": [{"metric": "MeanAbsoluteError", "upper_bound": 1e6}]},
    "serving": {"model_name": "houses"},
}


def write_houses_csv(path: Path, rows: int) -> None:
    """Integer, float and text columns, and an integer category (`built`, a year)."""
    rng = np.random.default_rng(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["price", "area_m2", "rooms", "district", "built"])
        for _ in range(rows):
            area, rooms = round(float(rng.uniform(30, 150)), 1), int(rng.integers(1, 6))
            district = str(rng.choice(["north", "south", "centre"]))
            built = int(rng.choice([1960, 1990, 2020]))
            price = area * 3 + rooms * 10 + (50 if district == "centre" else 0)
            writer.writerow([round(price + float(rng.normal(0, 5)), 1), area, rooms,
                             district, built])


def test_one_raw_row_is_answered_alike_by_predict_and_regress(workspace: Path):
    """The same feature dict, in the CSV's own types (ints as int64, floats, text), given
    to `serving_default` and, as a tf.Example, to TF Serving's `regress` signature."""
    import tensorflow as tf

    write_houses_csv(workspace / "data" / "week-1" / "houses.csv", rows=600)
    config = load_config(write_config(workspace, base=HOUSE_CONFIG))
    report = run_pipeline(config)
    assert report.succeeded and report.pushed_version == "1", report.error
    model = tf.saved_model.load(os.path.join(config.serving_model_dir, "1"))
    row = {"area_m2": 88.5, "rooms": 3, "district": "centre", "built": 1990}
    predict = model.signatures["serving_default"]
    dtypes = {k: v.dtype for k, v in predict.structured_input_signature[1].items()}
    assert dtypes == {"area_m2": tf.float32, "rooms": tf.int64, "district": tf.string,
                      "built": tf.int64}
    predicted = predict(**{k: tf.constant([v], dtypes[k]) for k, v in row.items()})["outputs"]
    example = tf.train.Example(features=tf.train.Features(feature={
        "area_m2": tf.train.Feature(float_list=tf.train.FloatList(value=[row["area_m2"]])),
        "rooms": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["rooms"]])),
        "district": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"centre"])),
        "built": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["built"]]))}))
    regressed = model.signatures["regress"](
        inputs=tf.constant([example.SerializeToString()]))["outputs"]
    assert np.allclose(predicted.numpy().ravel(), regressed.numpy().ravel(), rtol=1e-5)
