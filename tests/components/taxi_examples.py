"""Gzipped taxi tf.Examples in two splits, as CsvExampleGen writes them: the input the
component tests (statistics, Transform, Evaluator) compare executors on."""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components import csv_columns
from tests.conftest import copy_taxi_span, executor_beam_args

SPLITS = ("train", "eval")
# The project's Beam options (see builder.beam_pipeline_args).
BEAM_ARGS = executor_beam_args("--direct_running_mode=in_memory", "--direct_num_workers=1")


def taxi_examples(folder: Path, rows: int) -> standard_artifacts.Examples:
    """An Examples artifact as CsvExampleGen writes it: gzipped tf.Examples, two splits."""
    csv_path = copy_taxi_span(1, folder / "csv", rows=rows) / "trips.csv"
    header = io_utils.load_csv_column_names(str(csv_path))
    batches = list(csv_columns.read_batches(str(csv_path), header))
    kinds = csv_columns.merge_kinds(csv_columns.batch_kinds(b) for b in batches)
    records = [r for batch in batches for r in csv_columns.to_examples(batch, kinds)]
    examples = standard_artifacts.Examples()
    examples.uri = str(folder / "examples")
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    examples.span = 7
    for split, keep in zip(SPLITS, (lambda i: i % 5, lambda i: not i % 5)):
        split_dir = Path(examples.uri) / f"Split-{split}"
        split_dir.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(split_dir / "data_tfrecord-00000-of-00001.gz"),
                                  options="GZIP") as writer:
            for i, record in enumerate(records):
                if keep(i):
                    writer.write(record)
    return examples


