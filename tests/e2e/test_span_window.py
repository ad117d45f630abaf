"""A run that trains on a window of spans (`data.train_spans`), end to end on real TFX
components: ExampleGen reads every span of the window into one data set, the report names
the newest span, and the model is trained, blessed and pushed from it."""
from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from pipeline.definition.config import load_config
from pipeline.local.run import run_pipeline
from tests.conftest import copy_taxi_span, write_config

pytestmark = pytest.mark.slow

ROWS = 600
SETTINGS = {"training.train_steps": 100, "training.eval_steps": 5, "training.batch_size": 64,
            "evaluation.thresholds": [{"metric": "AUC", "lower_bound": 0.5}]}


def count_examples(examples_uri: str) -> int:
    files = tf.io.gfile.glob(f"{examples_uri}/Split-*/*.gz")
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_a_run_trains_on_the_newest_spans_of_its_window(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for span, rows in ((1, ROWS), (2, ROWS // 2), (3, ROWS // 3)):
        copy_taxi_span(span, tmp_path / "data", rows=rows)
    config = load_config(write_config(tmp_path, {**SETTINGS, "data.train_spans": 2}))

    report = run_pipeline(config)

    assert report.succeeded, report.error
    assert report.span == 3 and report.train_spans == 2
    # spans 2 and 3, not span 1: every row of the window, split between train and eval
    assert count_examples(report.examples_uri) == ROWS // 2 + ROWS // 3
    assert report.pushed_version == "1"
