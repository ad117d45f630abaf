"""StatisticsGen executor that computes statistics in this process when Beam would too.

Where Beam would not distribute the work (`beam_runner`), the stock executor runs it all in
this process anyway, and on the bundled data it spent most of its time building and
running a Beam pipeline around the statistics (bench/pipeline; see docs/performance.md).
TFDV has a Beam-free path (`generate_statistics_in_memory`, behind
`tfdv.generate_statistics_from_dataframe`); here the split's records stream through the
same generators in batches, so memory stays bounded by the sketches, not the data.

Decoding the records was most of this path's time at 1.5 M rows; gzipped tf.Examples are
read by `example_batches` (from ExampleGen's decoded copy where there is one, else decoded
in C++ in small calls, several threads above `parallelism.AUTO_MIN_BYTES`), other payloads
through TFX's TFXIO (bench/components, bench/scale; see docs/performance.md).

One difference in method, none in the defaults' results at this scale: top-k values and
unique counts come from TFDV's sketches (Misra-Gries with 1,024 counters, KMV with 16,384
hashes), which are exact below those numbers of distinct values and estimates above.

A runner that distributes work (Dataflow, Flink, Spark, or several direct workers), or a
statistics option this path does not cover, gets the stock Beam executor unchanged.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Optional

import pyarrow as pa

from absl import logging
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_data_validation.statistics import stats_options as tfdv_options
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import types
from tfx.components.statistics_gen import executor as stock
from tfx.components.util import examples_utils
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils
from tfx.types import standard_component_specs as specs
from tfx.utils import io_utils
from tfx.utils import json_utils
from tfx_bsl.tfxio import dataset_options

from components import example_batches, parallelism
from components.beam_runner import beam_would_distribute

BATCH_SIZE = 8192


def unsupported_option(exec_properties: dict[str, Any],
                       input_dict: dict[str, list[types.Artifact]]) -> Optional[str]:
    """Names the first setting only the stock executor handles, or None."""
    if input_dict.get(specs.SCHEMA_KEY):
        return "a schema input"
    examples = artifact_utils.get_single_instance(input_dict[specs.EXAMPLES_KEY])
    if examples.has_custom_property(examples_utils.CUSTOM_SPLIT_PATTERN_PROPERTY_NAME):
        return "custom split patterns"
    if exec_properties.get(specs.SHARDED_STATS_OUTPUT_KEY):
        return "sharded output"
    if json_utils.loads(exec_properties.get(specs.SAMPLE_RATE_BY_SPLIT_KEY) or "null"):
        return "sample_rate_by_split"
    if exec_properties.get(specs.STATS_OPTIONS_JSON_KEY):
        # Lift statistics (label_feature), sampling, slicing, allow-lists and custom
        # generators change what is computed: leave them all to TFDV's Beam path.
        return "stats_options"
    return None


def split_batches(examples: types.Artifact, split: str, beam_pipeline_args: list[str]
                  ) -> Iterator[pa.RecordBatch]:
    """The split's records as record batches: through `example_batches` in
    `parallelism.threads_for` threads for gzipped tf.Examples, else through TFX's TFXIO."""
    patterns = example_batches.split_patterns([examples], split)
    if patterns is None:
        tfxio = tfxio_utils.get_split_tfxio(
            examples=[examples], split=split, telemetry_descriptors=["StatisticsGen"])
        return tfxio.RecordBatches(dataset_options.RecordBatchesOptions(
            batch_size=BATCH_SIZE, drop_final_batch=False, num_epochs=1, shuffle=False))
    threads = parallelism.threads_for(beam_pipeline_args,
                                      parallelism.stored_bytes(patterns))
    logging.info("Reading split %s in %d thread(s).", split, threads)
    return example_batches.read(patterns, None, BATCH_SIZE, threads)


def split_statistics(examples: types.Artifact, split: str,
                     options: tfdv_options.StatsOptions,
                     beam_pipeline_args: Optional[list[str]] = None
                     ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Statistics of one split, its records read in batches through TFDV's generators."""
    return batch_statistics(split_batches(examples, split, beam_pipeline_args or []),
                            options)


def batch_statistics(batches: Iterable[pa.RecordBatch], options: tfdv_options.StatsOptions
                     ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV's statistics of a stream of record batches, through its in-memory generators."""
    generators = stats_impl.get_generators(options, in_memory=True)
    accumulators = [generator.create_accumulator() for generator in generators]
    for batch in batches:
        accumulators = [generator.add_input(accumulator, batch)
                        for generator, accumulator in zip(generators, accumulators)]
    return stats_impl.extract_statistics_output(accumulators, generators)


class Executor(stock.Executor):
    """The stock StatisticsGen executor, without Beam where Beam would not distribute."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        """Writes each split's statistics in this process, or hands the work to the stock
        executor (Beam) when an option or the runner needs it.

        Raises:
            ValueError: every split of the examples is excluded (the stock message).
        """
        reason = unsupported_option(exec_properties, input_dict)
        if reason is None and beam_would_distribute(self._beam_pipeline_args):
            reason = "a distributing Beam runner"
        if reason:
            logging.info("StatisticsGen through Beam: %s", reason)
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict[specs.EXAMPLES_KEY])
        excluded = json_utils.loads(exec_properties.get(specs.EXCLUDE_SPLITS_KEY) or "null")
        splits = [split for split in artifact_utils.decode_split_names(examples.split_names)
                  if split not in (excluded or [])]
        if not splits:
            raise ValueError(f"No splits for examples artifact: {examples.uri}")

        output = output_dict[specs.STATISTICS_KEY]
        statistics = artifact_utils.get_single_instance(output)
        # The properties the stock executor sets, so readers cannot tell the paths apart.
        statistics.split_names = artifact_utils.encode_split_names(splits)
        statistics.span = examples.span
        statistics.set_string_custom_property(stock.STATS_DASHBOARD_LINK, "")
        statistics.set_json_value_custom_property(
            stock.SAMPLE_RATE_BY_SPLIT_PROPERTY_NAME,
            json_utils.dumps({split: 1.0 for split in splits}))

        for split in splits:
            logging.info("Generating statistics for split %s in this process.", split)
            result = split_statistics(examples, split, tfdv_options.StatsOptions(),
                                      self._beam_pipeline_args)
            io_utils.write_bytes_file(
                os.path.join(artifact_utils.get_split_uri(output, split),
                             stock.DEFAULT_FILE_NAME),
                result.SerializeToString())
