"""The Transform executor writes the transform graph TFX's stock executor writes."""
from __future__ import annotations

import contextlib
import filecmp
import json
from pathlib import Path
from typing import Callable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
from apache_beam.testing import util as beam_util
from tfx.components.transform import executor as stock
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx_bsl.tfxio import dataset_options

from components import example_batches, statistics, transform
from pipeline.definition.builder import PREPROCESSING_FN
from pipeline.definition.config import load_config
from tests.components.taxi_examples import BEAM_ARGS, taxi_examples
from tests.conftest import REPO

THREADS = [*BEAM_ARGS, "--in_process_threads=2"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> standard_artifacts.Examples:
    return taxi_examples(tmp_path_factory.mktemp("examples"), rows=3000)


@pytest.fixture(scope="module")
def schema(examples, tmp_path_factory) -> standard_artifacts.Schema:
    """The schema SchemaGen infers for the examples (as the pipeline runs it: statistics
    from StatisticsGen's in-process path, the same as TFDV's Beam pipeline computes,
    test_statistics.py, without a Beam pipeline's two seconds)."""
    stats = statistics.split_statistics(examples, "train", tfdv.StatsOptions())
    artifact = standard_artifacts.Schema()
    artifact.uri = str(tmp_path_factory.mktemp("schema"))
    tfdv.write_schema_text(tfdv.infer_schema(stats, infer_feature_shape=False),
                           str(Path(artifact.uri) / "schema.pbtxt"))
    return artifact


def run_executor(executor_class: type, examples, schema, out: Path,
                 beam_args: list[str]) -> Path:
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(out)
    executor = executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args, tmp_dir=str(out / "tmp")))
    config = load_config(REPO / "pipeline_config.yaml")
    # The properties the pipeline's Transform passes (pipeline/definition/builder.py).
    executor.Do({"examples": [examples], "schema": [schema]}, {"transform_graph": [graph]},
                {"preprocessing_fn": PREPROCESSING_FN,
                 "custom_config": json.dumps(config.model_custom_config()),
                 "force_tf_compat_v1": 1, "disable_statistics": 1})
    return out


@pytest.fixture(scope="module")
def inspections() -> dict[str, dict[str, int]]:
    """How often each executor of `graphs` traced the preprocessing_fn and asked for the
    analyzer cache's keys."""
    return {}


@pytest.fixture(scope="module")
def all_graphs(examples, schema, tmp_path_factory, inspections) -> dict[str, Path]:
    """The stock executor's and this project's transform graphs: ours decoding in two
    threads, and ours reading the same records' decoded copy (`components.decoded_copy`;
    one thread, where the records alone would go through TFX's reading)."""
    out = tmp_path_factory.mktemp("transform")
    copied = taxi_examples(tmp_path_factory.mktemp("copied"), rows=3000, decoded_copy=True)
    assert transform.in_process_tfxio(train_tfxio(copied), BEAM_ARGS) is not None
    with counting_inspections(inspections, "stock"):
        stock_graph = run_executor(stock.Executor, examples, schema, out / "stock", BEAM_ARGS)
    with counting_inspections(inspections, "ours"):
        our_graph = run_executor(transform.Executor, examples, schema, out / "ours", THREADS)
    return {"stock": stock_graph, "ours": our_graph,
            "ours from the copy": run_executor(transform.Executor, copied, schema,
                                               out / "copy", BEAM_ARGS)}


@pytest.fixture(scope="module", params=["ours", "ours from the copy"])
def graphs(all_graphs, request) -> tuple[Path, Path]:
    """The stock graph and one of ours."""
    return all_graphs["stock"], all_graphs[request.param]


@contextlib.contextmanager
def counting_inspections(counts: dict, name: str) -> Iterator[None]:
    from tensorflow_transform import impl_helper
    from tensorflow_transform.beam import analysis_graph_builder

    counts[name] = {"traces": 0, "cache_keys": 0}
    with pytest.MonkeyPatch.context() as patch:
        for owner, attribute, counter in (
                (impl_helper, "trace_preprocessing_function", "traces"),
                (analysis_graph_builder, "get_analysis_cache_entry_keys", "cache_keys")):
            patch.setattr(owner, attribute, counted(getattr(owner, attribute),
                                                    counts[name], counter))
        yield


def counted(function: Callable, counts: dict, counter: str) -> Callable:
    def call(*args, **kwargs):
        counts[counter] += 1
        return function(*args, **kwargs)
    return call


@pytest.mark.slow  # TFX's stock Transform runs beside ours
def test_same_vocabularies(graphs) -> None:
    stock_assets, our_assets = (graph / "transform_fn" / "assets" for graph in graphs)
    names = sorted(path.name for path in stock_assets.iterdir())
    assert "company" in names
    assert sorted(path.name for path in our_assets.iterdir()) == names
    _, mismatch, errors = filecmp.cmpfiles(stock_assets, our_assets, names, shallow=False)
    assert not mismatch and not errors


@pytest.mark.slow  # TFX's stock Transform runs beside ours
def test_same_transformed_features_and_metadata(graphs, examples) -> None:
    records = list(example_batches.raw_batches(
        example_batches.matching_files([str(Path(examples.uri) / "Split-eval" / "*")]),
        batch_size=1000, prefetch=1))[0]
    stock_output, ours = (tft.TFTransformOutput(str(graph)) for graph in graphs)
    assert ours.transformed_metadata.schema == stock_output.transformed_metadata.schema
    expected, actual = (transformed(output, records) for output in (stock_output, ours))
    assert actual.keys() == expected.keys() and len(expected) > 10
    for name, values in expected.items():
        if values.dtype.kind == "f":
            # z-scores: a mean and variance summed in other batches may differ in the
            # last bits, as between two stock runs.
            np.testing.assert_allclose(actual[name], values, rtol=1e-6, atol=1e-6,
                                       err_msg=name)
        else:  # bucket and vocabulary indices
            np.testing.assert_array_equal(actual[name], values, name)


def transformed(output: tft.TFTransformOutput, records) -> dict[str, np.ndarray]:
    """The graph applied to serialized examples (a TF1 graph, as `force_tf_compat_v1`
    writes it, so in graph mode)."""
    with tf.Graph().as_default():
        parsed = tf.io.parse_example(records, output.raw_feature_spec())
        tensors = output.transform_raw_features(parsed)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.tables_initializer())
            return session.run(tensors)


def test_beam_source_gives_tf_transform_the_stock_record_batches(examples, schema) -> None:
    """Same rows, columns, types and order as TFX's TFXIO, projected as tf.Transform does."""
    stock_tfxio = tfxio_utils.make_tfxio(
        file_pattern=[str(Path(examples.uri) / "Split-train" / "*")],
        file_format=["tfrecords_gzip"], telemetry_descriptors=["test"],
        payload_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        schema=tfdv.load_schema_text(str(Path(schema.uri) / "schema.pbtxt")))
    ours = transform.in_process_tfxio(stock_tfxio, THREADS)
    assert ours is not None and ours.threads == 2
    columns = ["company", "fare", "trip_start_hour"]
    stock_tfxio, ours = (tfxio.Project(columns) for tfxio in (stock_tfxio, ours))
    assert ours.TensorAdapterConfig().arrow_schema == stock_tfxio.ArrowSchema()
    # The same decoder without Beam: what the stock Beam source yields, in one table.
    expected = pa.Table.from_batches(stock_tfxio.RecordBatches(
        dataset_options.RecordBatchesOptions(
            batch_size=1000, drop_final_batch=False, num_epochs=1, shuffle=False)))
    assert expected.num_rows > 2000 and sorted(expected.column_names) == sorted(columns)

    def same_table(batches: list[pa.RecordBatch]) -> None:
        assert pa.Table.from_batches(batches).equals(expected)

    with beam.Pipeline() as pipeline:
        beam_util.assert_that(pipeline | ours.BeamSource(), same_table)


def train_tfxio(examples, **raw):
    return tfxio_utils.make_tfxio(
        file_pattern=[str(Path(examples.uri) / "Split-train" / "*")],
        file_format=["tfrecords_gzip"], telemetry_descriptors=["test"],
        payload_format=example_gen_pb2.FORMAT_TF_EXAMPLE, **raw)


def test_other_payloads_and_small_data_in_one_thread_keep_tfx_reading(examples) -> None:
    raw_records = train_tfxio(examples, read_as_raw_records=True, raw_record_column_name="raw")
    assert transform.in_process_tfxio(raw_records, THREADS) is None
    assert transform.in_process_tfxio(train_tfxio(examples), BEAM_ARGS) is None  # 1 thread
    assert transform.in_process_tfxio(train_tfxio(examples), THREADS) is not None


@pytest.mark.parametrize("beam_args,in_process", [
    (BEAM_ARGS, True),
    ([*BEAM_ARGS, "--direct_num_workers=2"], False),
    (["--runner=DataflowRunner"], False),
])
def test_a_distributing_runner_gets_the_stock_processor(beam_args, in_process) -> None:
    executor = transform.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args))
    processor = executor.processor_class()
    assert (processor is not stock.TransformProcessor) == in_process
    assert issubclass(processor, stock.TransformProcessor)


@pytest.mark.slow  # TFX's stock Transform runs beside ours
def test_the_preprocessing_fn_is_traced_once_for_inspection_and_once_for_analysis(
        all_graphs, inspections) -> None:
    """TFX's executor traces it five times (three column inspections, the analyzer
    cache's keys, the analysis); with no analyzer cache, ours traces it twice and asks for
    no cache keys (components/transform.py)."""
    assert inspections["stock"] == {"traces": 5, "cache_keys": 1}
    assert inspections["ours"] == {"traces": 2, "cache_keys": 0}


def test_with_an_analyzer_cache_the_cache_keys_are_computed_as_tfx_does() -> None:
    from tensorflow_transform.beam import analysis_graph_builder
    from tfx.types import standard_component_specs as specs

    stock_keys = analysis_graph_builder.get_analysis_cache_entry_keys
    with transform._no_cache_keys_without_a_cache({}, {}):
        assert analysis_graph_builder.get_analysis_cache_entry_keys(None, {}, [], True) == set()
    for inputs, outputs in (({specs.ANALYZER_CACHE_KEY: [object()]}, {}),
                            ({}, {specs.UPDATED_ANALYZER_CACHE_KEY: [object()]})):
        with transform._no_cache_keys_without_a_cache(inputs, outputs):
            assert analysis_graph_builder.get_analysis_cache_entry_keys is stock_keys
    assert analysis_graph_builder.get_analysis_cache_entry_keys is stock_keys
