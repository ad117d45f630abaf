"""`pipeline.beam_args` judged by Beam's own parser, runner registry and validator."""
from __future__ import annotations

import pytest

from pipeline.definition import beam_options


@pytest.mark.parametrize("args", [
    ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    ["--runner=FlinkRunner", "--flink_master=localhost:8081", "--environment_type=LOOPBACK"],
    ["--runner=SparkRunner", "--spark_master_url=local[2]"],
    ["--runner=DataflowRunner", "--project=my-project", "--region=europe-west1",
     "--temp_location=gs://my-bucket/tmp", "--staging_location=gs://my-bucket/staging"],
], ids=["direct", "multi-processing", "flink", "spark", "dataflow"])
def test_settings_beam_accepts(args):
    assert beam_options.problems(args) == []


def test_an_unknown_option_is_named():
    assert beam_options.problems(["--direct_num_wokers=2"]) == [
        "unknown option(s), not used by Beam: ['--direct_num_wokers=2']"]


def test_a_bad_value_is_named_with_its_option():
    assert beam_options.problems(["--direct_running_mode=fast"]) == [
        "argument --direct_running_mode: invalid choice: 'fast' (choose from 'in_memory', "
        "'multi_threading', 'multi_processing')"]


def test_an_unknown_runner_is_named():
    assert beam_options.problems(["--runner=Dataflo"]) == [
        "Unexpected pipeline runner: Dataflo"]


def test_what_dataflow_requires_is_listed():
    found = beam_options.problems(["--runner=DataflowRunner", "--temp_location=gs://my-bucket/tmp"])
    assert "Missing required option: project." in found
    assert "Missing required option: region." in found
