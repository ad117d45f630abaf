"""Bring your own data: a CSV with other columns trains, evaluates and pushes by editing
the config alone (numeric and text features, missing values, text labels, 3 classes)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from components import versioned_pusher
from pipeline import local
from pipeline.config import load_config
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
    report = local.run_pipeline(config)

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
