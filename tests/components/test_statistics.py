"""The in-process StatisticsGen executor describes data as TFX's Beam executor does."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.components.statistics_gen import executor as stock
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components import decoded_copy, example_batches, statistics
from tests.components.taxi_examples import BEAM_ARGS, SPLITS, taxi_examples

def run_executor(executor_class: type, examples: standard_artifacts.Examples, out: Path,
                 exec_properties: Optional[dict[str, Any]] = None,
                 beam_args: Optional[list[str]] = None) -> standard_artifacts.ExampleStatistics:
    statistics_artifact = standard_artifacts.ExampleStatistics()
    statistics_artifact.uri = str(out)
    executor = executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args or BEAM_ARGS, tmp_dir=str(out / "tmp")))
    executor.Do({"examples": [examples]}, {"statistics": [statistics_artifact]},
                {"exclude_splits": "[]", **(exec_properties or {})})
    return statistics_artifact


def load(artifact, split: str):
    return stats_artifact_utils.load_statistics(artifact, split).proto()


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> standard_artifacts.Examples:
    return taxi_examples(tmp_path_factory.mktemp("examples"), rows=3000)


@pytest.fixture(scope="module")
def runs(examples, tmp_path_factory) -> dict[str, standard_artifacts.ExampleStatistics]:
    """The stock (Beam) executor's and this project's output on the same Examples, ours
    decoding in this thread and in two more (`components.example_batches`), and reading
    the same records' decoded copy (`components.decoded_copy`)."""
    out = tmp_path_factory.mktemp("statistics")
    copied = taxi_examples(tmp_path_factory.mktemp("copied"), rows=3000, decoded_copy=True)
    assert all(decoded_copy.copied(example_batches.matching_files(
        [f"{copied.uri}/Split-{split}/*"])) for split in SPLITS)
    return {"stock": run_executor(stock.Executor, examples, out / "stock"),
            **{name: run_executor(statistics.Executor, examples, out / name,
                                  beam_args=[*BEAM_ARGS, f"--in_process_threads={threads}"])
               for name, threads in (("ours", 1), ("ours in threads", 2))},
            "ours from the copy": run_executor(statistics.Executor, copied, out / "copy")}


@pytest.fixture(scope="module")
def both(runs):
    return runs["stock"], runs["ours"]


def by_name(stats) -> dict[str, Any]:
    return {feature.path.step[0]: feature for feature in stats.datasets[0].features}


@pytest.mark.parametrize("ours_name", ["ours", "ours in threads", "ours from the copy"])
@pytest.mark.parametrize("split", SPLITS)
def test_same_statistics_as_the_beam_executor(runs, split: str, ours_name: str) -> None:
    stock_stats, ours = (load(runs[name], split) for name in ("stock", ours_name))
    assert ours.datasets[0].num_examples == stock_stats.datasets[0].num_examples > 500
    expected, actual = by_name(stock_stats), by_name(ours)
    assert actual.keys() == expected.keys()
    for name, feature in expected.items():
        got = actual[name]
        assert got.type == feature.type, name
        if feature.HasField("num_stats"):
            assert got.num_stats.common_stats == feature.num_stats.common_stats, name
            for field in ("mean", "std_dev", "min", "max", "num_zeros"):
                assert getattr(got.num_stats, field) == pytest.approx(
                    getattr(feature.num_stats, field), rel=1e-9), (name, field)
        else:
            assert got.string_stats.common_stats == feature.string_stats.common_stats, name
            assert got.string_stats.unique == feature.string_stats.unique, name
            assert ({(v.value, v.frequency) for v in got.string_stats.top_values}
                    == {(v.value, v.frequency) for v in feature.string_stats.top_values}), name


def test_same_inferred_schema_and_same_anomalies_against_it(both) -> None:
    stock_stats, ours = (load(artifact, "train") for artifact in both)
    schema = tfdv.infer_schema(stock_stats)
    assert tfdv.infer_schema(ours) == schema
    assert not tfdv.validate_statistics(ours, schema).anomaly_info
    # The eval rows hold a company the train rows lack: both executors must show it.
    stock_eval, ours_eval = (tfdv.validate_statistics(load(artifact, "eval"), schema)
                             for artifact in both)
    assert ours_eval == stock_eval
    assert "company" in ours_eval.anomaly_info


def test_same_artifact_properties_as_the_beam_executor(both) -> None:
    stock_artifact, ours = both
    assert ours.split_names == stock_artifact.split_names
    assert ours.span == stock_artifact.span == 7
    for name in (stock.STATS_DASHBOARD_LINK, stock.SAMPLE_RATE_BY_SPLIT_PROPERTY_NAME):
        assert ours.get_custom_property(name) == stock_artifact.get_custom_property(name)


def test_excluded_splits_are_skipped(examples, tmp_path: Path) -> None:
    artifact = run_executor(statistics.Executor, examples, tmp_path,
                            {"exclude_splits": '["eval"]'})
    assert artifact_utils.decode_split_names(artifact.split_names) == ["train"]
    assert not (tmp_path / "Split-eval").exists()


def test_statistics_options_go_through_beam_and_are_honoured(examples, tmp_path) -> None:
    options = tfdv.StatsOptions(num_top_values=2)
    artifact = run_executor(statistics.Executor, examples, tmp_path,
                            {"stats_options_json": options.to_json()})
    company = by_name(load(artifact, "train"))["company"]
    assert len(company.string_stats.top_values) == 2


@pytest.mark.parametrize("exec_properties,reason", [
    ({}, None),
    ({"exclude_splits": '["eval"]'}, None),
    ({"stats_options_json": tfdv.StatsOptions(sample_rate=0.5).to_json()}, "stats_options"),
    ({"sample_rate_by_split": '{"train": 0.5}'}, "sample_rate_by_split"),
    ({"sharded_stats_output": True}, "sharded output"),
])
def test_options_only_beam_handles_are_named(examples, exec_properties, reason) -> None:
    inputs = {"examples": [examples]}
    assert statistics.unsupported_option(exec_properties, inputs) == reason
    schema = standard_artifacts.Schema()
    assert (statistics.unsupported_option(exec_properties, {**inputs, "schema": [schema]})
            == "a schema input")


def sparse_examples(path: Path, rows: int) -> None:
    """Gzipped tf.Examples where `late` has values only after row 1,500 (a piece of
    `example_batches.DECODE_ROWS` rows without any) and `empty` is an empty float list."""
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for row in range(rows):
            example = tf.train.Example()
            example.features.feature["row"].int64_list.value.append(row)
            example.features.feature["empty"].float_list.SetInParent()
            if row > 1500:
                example.features.feature["late"].bytes_list.value.append(b"x%d" % row)
            writer.write(example.SerializeToString())


@pytest.mark.parametrize("threads", [1, 2])
def test_example_batches_decode_as_tfxio_does(tmp_path: Path, threads: int) -> None:
    from tfx_bsl.arrow import table_util
    from tfx_bsl.tfxio import dataset_options, tf_example_record

    path = tmp_path / "data.gz"
    sparse_examples(path, rows=5000)
    (expected,) = tf_example_record.TFExampleRecord(str(path)).RecordBatches(
        dataset_options.RecordBatchesOptions(
            batch_size=5000, drop_final_batch=False, num_epochs=1, shuffle=False))
    batches = list(example_batches.read([str(path)], None, batch_size=3000, threads=threads))
    assert [batch.num_rows for batch in batches] == [3000, 2000]
    # Columns come in the order of their first appearance in each batch, as with TFXIO.
    actual = table_util.MergeRecordBatches(batches)
    assert sorted(actual.schema.names) == sorted(expected.schema.names) == [
        "empty", "late", "row"]
    for name in expected.schema.names:
        assert actual.column(name).equals(expected.column(name)), name
