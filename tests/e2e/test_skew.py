"""`mlops skew` on a real served version: requests drawn from its training data show no
skew; requests with one shifted number and one new category name exactly those two."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pytest

from pipeline.feedback import skew
from tests.conftest import PushedWorkspace, mlops_in_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(pushed_workspace: PushedWorkspace):
    """Version 1 of the session's shared run: its config, config file and run record."""
    return pushed_workspace.config, pushed_workspace.config_file, pushed_workspace.report


def training_examples(report) -> list:
    """The served version's own training rows, without the label: requests as clients
    would send them."""
    import tensorflow as tf

    files = glob.glob(os.path.join(report.examples_uri, "Split-train", "*"))
    examples = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        del example.features.feature["tips"]
        examples.append(example)
    return examples


def write_log(folder: Path, examples: list) -> Path:
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / "requests-00000.tfrecord")) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return folder


def test_requests_like_the_training_data_show_no_skew(served, tmp_path: Path):
    config, _, report = served
    log = write_log(tmp_path / "same", training_examples(report))
    found = skew.skew(config, str(log))
    assert found.version == 1 and found.requests > 1000
    assert {s.feature for s in found.skew} >= {"fare", "payment_type", "trip_start_hour"}
    assert found.problems == [], found.problems
    hour = next(s for s in found.skew if s.feature == "trip_start_hour")
    assert hour.measure == "L-infinity"  # an integer category, compared as a category
    assert next(s for s in found.skew if s.feature == "fare").measure == "Jensen-Shannon"


def test_a_shifted_number_and_a_new_category_are_named(served, tmp_path: Path):
    config, config_file, report = served
    shifted = training_examples(report)
    for index, example in enumerate(shifted):
        fare = example.features.feature["fare"].float_list
        if fare.value:
            fare.value[0] = fare.value[0] * 5 + 40
        if index % 2 == 0:
            example.features.feature["payment_type"].bytes_list.value[:] = [b"Crypto"]
    log = write_log(tmp_path / "shifted", shifted)
    found = skew.skew(config, str(log))
    assert {s.feature for s in found.skew if s.exceeded} == {"fare", "payment_type"}
    assert any("payment_type" in a and "Crypto" in a for a in found.anomalies), found.anomalies
    cli = mlops_in_process("skew", "--requests", str(log), "--json", "--config",
                           str(config_file))
    assert cli.returncode == 1, cli.stderr
    document = json.loads(cli.stdout)
    assert {s["feature"] for s in document["skew"] if s["exceeded"]} == {"fare", "payment_type"}
    text = mlops_in_process("skew", "--requests", str(log), "--config", str(config_file))
    page = Path(text.stdout.splitlines()[-1].removeprefix("Report: "))
    html = page.read_text()
    assert page.name == "skew-v1.html" and "shifted" in html and "Crypto" in html


def test_drift_between_two_request_logs(served, tmp_path: Path):
    config, _, report = served
    examples = training_examples(report)
    before = write_log(tmp_path / "before", examples)
    for example in examples:
        example.features.feature["payment_type"].bytes_list.value[:] = [b"Cash"]
    after = write_log(tmp_path / "after", examples)
    found = skew.skew(config, str(after), previous_dir=str(before))
    assert [s.feature for s in found.drift if s.exceeded] == ["payment_type"]


def test_no_request_log_is_one_clear_line(served, tmp_path: Path):
    _, config_file, _ = served
    result = mlops_in_process("skew", "--requests", str(tmp_path / "none"), "--config",
                              str(config_file))
    assert result.returncode == 1
    assert result.stderr.startswith("error: no request log under ")
