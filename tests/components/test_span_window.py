"""The span window: which spans and files a run reads, and its ExampleGen custom_config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from components import span_window
from tests.conftest import copy_taxi_span, executor_beam_args

PATTERN = "span-{SPAN}/*.csv"


def make_spans(base: Path, *spans: int) -> None:
    for span in spans:
        folder = base / f"span-{span}"
        folder.mkdir(parents=True)
        for part in ("b", "a"):
            (folder / f"{part}.csv").write_text("x\n1\n")


@pytest.mark.parametrize("newest,count,expected", [
    (3, 1, [3]), (3, 2, [2, 3]), (3, 5, [0, 1, 2, 3]), (0, 3, [0])])
def test_window_spans_end_at_the_newest_and_stop_at_zero(newest, count, expected) -> None:
    assert list(span_window.window_spans(newest, count)) == expected


def test_window_files_are_oldest_span_first_and_skip_missing_spans(tmp_path: Path) -> None:
    make_spans(tmp_path, 1, 2, 4, 5)
    files = span_window.window_files(str(tmp_path), PATTERN, newest=4, count=3)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "span-2/a.csv", "span-2/b.csv", "span-4/a.csv", "span-4/b.csv"]  # span 3 is missing
    assert span_window.window_files(str(tmp_path), PATTERN, newest=1, count=1) == sorted(
        str(p) for p in (tmp_path / "span-1").glob("*.csv"))


@pytest.mark.parametrize("decoded_copy", [True, False])
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "proto"])
def test_window_config_round_trips_through_the_execution_property(as_json: bool,
                                                                  decoded_copy: bool) -> None:
    config = span_window.window_config(PATTERN, 3, ["NA", "?"], decoded_copy)
    value = json_format.MessageToJson(config) if as_json else config
    assert span_window.read_window_config({"custom_config": value}) == (
        PATTERN, 3, ("NA", "?"), decoded_copy)


def test_a_window_config_written_before_the_decoded_copy_keeps_it_on() -> None:
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2

    options = struct_pb2.Struct()
    options.update({span_window.SPAN_PATTERN_KEY: PATTERN, span_window.TRAIN_SPANS_KEY: 1})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(options)
    assert span_window.read_window_config({"custom_config": config}).decoded_copy


def test_missing_window_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs window_config"):
        span_window.read_window_config({"custom_config": None})
    with pytest.raises(ValueError, match="needs window_config"):
        span_window.read_window_config({"custom_config": json.dumps({})})


def run_example_gen(data: Path, out: Path, beam_args: list[str], driver_ran: bool = True,
                    decoded_copy: bool = True):
    """The span window executor on spans 1-2 of `data`, as the pipeline configures it.

    With `driver_ran`, the exec properties are what TFX's ExampleGen driver leaves (span 2
    resolved, pattern filled in); without, what Kubeflow hands over (no driver runs there).
    """
    from tfx.dsl.components.base import base_beam_executor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="single_split",
                                    pattern="span-2/*.csv" if driver_ran else PATTERN)])
    output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    executor = span_window.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=executor_beam_args(*beam_args),
        tmp_dir=str(out / "tmp")))
    resolved = {"span": 2} if driver_ran else {}
    executor.Do({}, {"examples": [examples]}, {
        "input_base": str(data), **resolved,
        "input_config": json_format.MessageToJson(input_config),
        "output_config": json_format.MessageToJson(output_config),
        "custom_config": json_format.MessageToJson(
            span_window.window_config(PATTERN, 2, decoded_copy=decoded_copy)),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP})
    return examples


def split_records(examples, split: str) -> list[bytes]:
    """The split's Examples, each serialized deterministically (map order aside), sorted."""
    import tensorflow as tf
    from tfx.types import artifact_utils

    folder = artifact_utils.get_split_uri([examples], split)
    return sorted(tf.train.Example.FromString(record.numpy()).SerializeToString(
        deterministic=True) for record in tf.data.TFRecordDataset(
            tf.io.gfile.glob(f"{folder}/*"), compression_type="GZIP"))


def test_in_process_ingestion_writes_what_the_beam_path_writes(tmp_path: Path) -> None:
    for span in (1, 2):
        copy_taxi_span(span, tmp_path / "data", rows=1500)
    in_process = run_example_gen(tmp_path / "data", tmp_path / "in_process",
                                 ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    # Two direct workers: Beam would spread the work, so TFX's Beam path writes the splits.
    beam = run_example_gen(tmp_path / "data", tmp_path / "beam",
                           ["--direct_running_mode=in_memory", "--direct_num_workers=2"])
    assert in_process.split_names == beam.split_names == '["train", "eval"]'
    for split in ("train", "eval"):
        assert split_records(in_process, split) == split_records(beam, split)
    sizes = [len(split_records(in_process, split)) for split in ("train", "eval")]
    assert sum(sizes) == 3000 and 2000 < sizes[0] < 2800
    for name in ("payload_format", "file_format"):
        assert (in_process.get_string_custom_property(name)
                == beam.get_string_custom_property(name) != "")


def test_threads_write_shards_holding_the_same_records(tmp_path: Path) -> None:
    """`--in_process_threads=2` (`pipeline.threads`): each split in two gzipped shards named
    as TFX names shards, together the records one thread writes."""
    copy_taxi_span(1, tmp_path / "data", rows=1500)
    one = run_example_gen(tmp_path / "data", tmp_path / "one",
                          ["--direct_num_workers=1", "--in_process_threads=1"])
    two = run_example_gen(tmp_path / "data", tmp_path / "two",
                          ["--direct_num_workers=1", "--in_process_threads=2"])
    for split in ("train", "eval"):
        folder = tmp_path / "two" / f"Split-{split}"
        assert sorted(p.name for p in folder.iterdir()) == [
            "data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"]
        assert split_records(two, split) == split_records(one, split)


def test_records_are_written_as_tfx_hashes_them(tmp_path: Path) -> None:
    """Each record is the deterministic serialization of its Example: the bytes TFX's
    partition function hashes, so no row is parsed or serialized again to pick its split."""
    import tensorflow as tf
    from tfx.types import artifact_utils

    copy_taxi_span(1, tmp_path / "data", rows=300)
    examples = run_example_gen(tmp_path / "data", tmp_path / "out", ["--direct_num_workers=1"])
    folder = artifact_utils.get_split_uri([examples], "eval")
    records = [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{folder}/*"),
                                                           compression_type="GZIP")]
    assert records and all(
        record == tf.train.Example.FromString(record).SerializeToString(deterministic=True)
        for record in records)


@pytest.mark.parametrize("buckets", [(2, 1), (1, 1), (9, 1), (5, 3, 2), (100, 7, 1, 13)])
def test_each_record_goes_to_the_split_tfx_s_partition_function_picks(buckets) -> None:
    """The batch computation of splits agrees with TFX's own `_PartitionFn`, record by
    record, on records of every length from empty up, for two to four splits."""
    import random

    from tfx.components.example_gen import base_example_gen_executor
    from tfx.proto import example_gen_pb2

    config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=f"split{i}", hash_buckets=count)
        for i, count in enumerate(buckets)]))
    rng = random.Random(len(buckets))
    records = [rng.randbytes(rng.randrange(0, 600)) for _ in range(2000)]
    cumulative = span_window.hash_split_buckets(config)
    expected = [base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
        record, len(cumulative), cumulative, config.split_config) for record in records]

    splits = span_window.split_of_records(records, config)

    assert splits.tolist() == expected
    assert set(expected) == set(range(len(buckets)))  # every split was chosen somewhere
    groups = span_window.records_by_split(records, splits, len(buckets))
    assert groups == [[r for r, split in zip(records, expected) if split == i]
                      for i in range(len(buckets))]


def kubeflow_exec_properties(data: Path, **extra) -> dict:
    """ExampleGen's exec properties as a Kubeflow task gets them: no driver ran."""
    from tfx.proto import example_gen_pb2

    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="single_split", pattern=PATTERN)])
    return {"input_base": str(data), "input_config": json_format.MessageToJson(input_config),
            **extra}


def test_without_a_driver_the_newest_span_is_resolved_at_run_time(tmp_path: Path) -> None:
    """Kubeflow never runs TFX's ExampleGen driver (`lifecycle.preCacheCheck`): the executor
    resolves `{SPAN}` itself, with the driver's own input processor, when it runs."""
    make_spans(tmp_path, 1, 2)
    first = span_window.resolve_span(kubeflow_exec_properties(tmp_path))
    make_spans(tmp_path, 3)  # a new span lands before the next scheduled run
    second = span_window.resolve_span(kubeflow_exec_properties(tmp_path))
    assert (first["span"], second["span"]) == (2, 3)
    assert json.loads(second["input_config"])["splits"][0]["pattern"] == "span-3/*.csv"
    assert second["input_fingerprint"].startswith("split:single_split,num_files:2")


def test_without_a_driver_a_configured_span_is_honoured(tmp_path: Path) -> None:
    from tfx.proto import range_config_pb2

    make_spans(tmp_path, 1, 2, 3)
    pinned = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
        start_span_number=1, end_span_number=1))
    resolved = span_window.resolve_span(kubeflow_exec_properties(
        tmp_path, range_config=json_format.MessageToJson(pinned)))
    assert resolved["span"] == 1


def test_a_driver_s_resolution_is_kept(tmp_path: Path) -> None:
    properties = {**kubeflow_exec_properties(tmp_path), "span": 7}
    assert span_window.resolve_span(properties) is properties


def test_without_a_driver_the_examples_record_span_and_fingerprint(tmp_path: Path) -> None:
    """What the driver would have recorded on the Examples (downstream components and the
    run summary read the span from there) is recorded by the executor itself."""
    for span in (1, 2):
        copy_taxi_span(span, tmp_path / "data", rows=100)
    with_driver = run_example_gen(tmp_path / "data", tmp_path / "local",
                                  ["--direct_running_mode=in_memory"])
    without = run_example_gen(tmp_path / "data", tmp_path / "kfp",
                              ["--direct_running_mode=in_memory"], driver_ran=False)
    assert without.get_int_custom_property("span") == 2  # where the driver records it
    assert without.get_string_custom_property("input_fingerprint").startswith(
        "split:single_split,num_files:1,")
    for split in ("train", "eval"):
        assert split_records(without, split) == split_records(with_driver, split)


@pytest.mark.slow
def test_beam_s_multi_processing_runner_writes_what_the_in_process_path_writes(
        tmp_path: Path) -> None:
    """The scale-out setting of `pipeline.beam_args`: Beam's direct runner with worker
    processes runs TFX's Beam path of ExampleGen, our DoFns pickled into the workers."""
    for span in (1, 2):
        copy_taxi_span(span, tmp_path / "data", rows=600)
    in_process = run_example_gen(tmp_path / "data", tmp_path / "in_process",
                                 ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    workers = run_example_gen(tmp_path / "data", tmp_path / "workers",
                              ["--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    for split in ("train", "eval"):
        assert split_records(workers, split) == split_records(in_process, split)
    assert sum(len(split_records(workers, s)) for s in ("train", "eval")) == 1200
