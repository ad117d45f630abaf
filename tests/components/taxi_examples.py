"""Gzipped taxi tf.Examples in two splits, as CsvExampleGen writes them: the input the
component tests (statistics, Transform, Evaluator) compare executors on."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components import csv_columns
from components import decoded_copy as decoded_copy_module
from tests.conftest import copy_taxi_span, executor_beam_args

SPLITS = ("train", "eval")
# The project's Beam options (see builder.beam_pipeline_args).
BEAM_ARGS = executor_beam_args("--direct_running_mode=in_memory", "--direct_num_workers=1")


def taxi_examples(folder: Path, rows: int,
                  decoded_copy: bool = False) -> standard_artifacts.Examples:
    """An Examples artifact as CsvExampleGen writes it: gzipped tf.Examples, two splits;
    with `decoded_copy`, also the copy this project's ExampleGen writes beside them."""
    csv_path = copy_taxi_span(1, folder / "csv", rows=rows) / "trips.csv"
    header = io_utils.load_csv_column_names(str(csv_path))
    batches = list(csv_columns.read_batches(str(csv_path), header))
    kinds = csv_columns.merge_kinds(csv_columns.batch_kinds(b) for b in batches)
    records = [r for batch in batches for r in csv_columns.to_examples(batch, kinds)]
    rows_decoded = pa.Table.from_batches(
        [csv_columns.to_decoded(batch, kinds) for batch in batches]).combine_chunks()
    examples = standard_artifacts.Examples()
    examples.uri = str(folder / "examples")
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    examples.span = 7
    for split, keep in zip(SPLITS, (lambda i: i % 5, lambda i: not i % 5)):
        split_dir = Path(examples.uri) / f"Split-{split}"
        split_dir.mkdir(parents=True)
        path = str(split_dir / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for i, record in enumerate(records):
                if keep(i):
                    writer.write(record)
        if decoded_copy:
            kept = [i for i in range(len(records)) if keep(i)]
            copy = decoded_copy_module.CopyWriter(path)
            for batch in rows_decoded.take(kept).to_batches(max_chunksize=1000):
                copy.write(batch)
            copy.close()
            decoded_copy_module.write_manifest([copy])
    return examples


