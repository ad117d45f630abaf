"""`mlops skew` on made-up data: a served version whose
training split, schema, run record and push manifest are written here (a few hundred
rows; the schema inferred by TFDV from them, as SchemaGen does), and request logs of
tf.Examples written here. No pipeline run: tests/e2e/test_skew.py runs one.

What must hold: the request log is every TFRecord file under its folder (plain or
gzipped, not a file still being written); categories are compared by L-infinity and
numbers by Jensen-Shannon, against the config's thresholds; identical data shows
nothing, a shifted number and a new category are named, and so is drift between two
logs; a missing log, version or record is one clear error.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.definition.config import PipelineConfig, load_config
from pipeline.errors import UserError
from pipeline.feedback import skew
from pipeline.records import store
from pipeline.records.summary import ComponentStatus, RunReport
from serving import versions
from tests.conftest import copy_taxi_span, write_config

FEATURES = {"features.numeric": ["fare"], "features.bucketized": {},
            "features.categorical": ["payment_type", "trip_start_hour"]}
PAYMENTS = ["Cash", "Credit Card", "Mobile"]
TRAINING_ROWS = 400
RUN_ID = "2026-03-01T10:00:00.000001"


def training_rows(count: int = TRAINING_ROWS, seed: int = 7) -> list[dict]:
    rng = np.random.RandomState(seed)
    rows = []
    for _ in range(count):
        payment = PAYMENTS[rng.choice(3, p=[0.5, 0.4, 0.1])]
        fare = round(float(rng.gamma(2.0, 6.0) + 3.25), 2)
        rows.append({"fare": fare, "payment_type": payment,
                     "trip_start_hour": int(rng.randint(0, 24)),
                     "tips": round(fare * 0.2, 2) if payment != "Cash" else 0.0})
    return rows


def example(row: dict):
    """A row as a tf.Example, typed as ExampleGen types the taxi CSV."""
    import tensorflow as tf

    features = {}
    for name, value in row.items():
        if isinstance(value, str):
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[value.encode()]))
        elif isinstance(value, int):
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=features))


def requests(rows: list[dict]) -> list[bytes]:
    """Rows as clients send them: without the label."""
    return [example({k: v for k, v in row.items() if k != "tips"}).SerializeToString()
            for row in rows]


def write_records(path: Path, records: list[bytes]) -> Path:
    """A TFRecord file (gzipped when its name ends in .gz)."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if path.suffix == ".gz" else "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for record in records:
            writer.write(record)
    return path


def write_log(folder: Path, rows: list[dict]) -> Path:
    """A request log in two files: one plain, one gzipped in a subfolder (rotated files
    of two servers)."""
    records = requests(rows)
    half = len(records) // 2
    write_records(folder / "requests-20260301T100000-000000001.tfrecord", records[:half])
    write_records(folder / "replica-2" / "requests-20260301T110000-000000002.tfrecord.gz",
                  records[half:])
    return folder


def serve_version(config: PipelineConfig, rows: list[dict], version: int = 1) -> RunReport:
    """What a run leaves behind for a pushed version: the training split as gzipped
    tf.Examples, the schema TFDV infers from it, the run's record, the push manifest."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    root = Path(config.pipeline.root)
    examples_uri = root / "CsvExampleGen" / "examples" / "1"
    for split, part in (("train", rows), ("eval", rows[: len(rows) // 4])):
        write_records(examples_uri / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz",
                      [example(row).SerializeToString() for row in part])
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(pd.DataFrame(rows)))
    schema_uri = root / "SchemaGen" / "schema" / "3"
    schema_uri.mkdir(parents=True)
    tfdv.write_schema_text(schema, str(schema_uri / "schema.pbtxt"))
    model_uri = str(root / "Trainer" / "model" / "6")
    report = RunReport(config.pipeline.name, RUN_ID, [ComponentStatus("Pusher", "done")],
                       span=1, examples_uri=str(examples_uri), schema_uri=str(schema_uri),
                       model_uri=model_uri, blessed=True, pushed_version=str(version))
    store.save(config, report)
    write_manifest(config, version, model_uri, RUN_ID)
    return report


def write_manifest(config: PipelineConfig, version: int, model_uri: str, run_id: str) -> None:
    path = Path(config.serving_model_dir, str(version), versions.MANIFEST_PATH)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"model_uri": model_uri, "pipeline_run": run_id,
                                "pushed_at": "2026-03-01T10:20:00+00:00",
                                "version": version}))


def workspace_config(folder: Path, **changes) -> PipelineConfig:
    copy_taxi_span(1, folder / "data", rows=5)
    return load_config(write_config(folder, {**FEATURES, **changes}))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> PipelineConfig:
    """Version 1 served, trained on `training_rows()`."""
    config = workspace_config(tmp_path_factory.mktemp("skew_site"))
    serve_version(config, training_rows())
    return config


def shifted(rows: list[dict]) -> list[dict]:
    """Fares five times higher plus 40, and every other payment in a new currency."""
    return [{**row, "fare": row["fare"] * 5 + 40,
             **({"payment_type": "Crypto"} if index % 2 == 0 else {})}
            for index, row in enumerate(rows)]


def by_feature(shifts: list[skew.Shift]) -> dict[str, skew.Shift]:
    return {shift.feature: shift for shift in shifts}


# --- the request log ------------------------------------------------------------------

def test_the_request_log_is_every_tfrecord_file_under_its_folder(tmp_path: Path):
    for name in ("b/requests-2.tfrecord", "a/c/requests-1.tfrecord.gz", "rotated.gz",
                 "notes.txt", "requests.json", ".requests-being-written.tfrecord"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert skew.request_files(str(tmp_path)) == [
        str(tmp_path / "a/c/requests-1.tfrecord.gz"), str(tmp_path / "b/requests-2.tfrecord"),
        str(tmp_path / "rotated.gz")]


def test_no_request_log_is_one_clear_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "requests.csv").write_text("fare\n1.0\n")
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(skew.SkewError) as missing:
            skew.request_files(str(folder))
        assert str(missing.value) == (f"no request log under {folder} (TFRecord files of "
                                      "tf.Examples: *.tfrecord, *.tfrecord.gz, *.gz)")
        assert isinstance(missing.value, UserError)
    config = workspace_config(tmp_path / "site")  # nothing served either: the log is first
    with pytest.raises(skew.SkewError, match=r"^no request log under .*absent \("):
        skew.skew(config, str(tmp_path / "absent"))


def test_records_are_read_back_from_plain_and_gzipped_files(tmp_path: Path):
    records = requests(training_rows(6))
    plain = write_records(tmp_path / "a.tfrecord", records[:4])
    zipped = write_records(tmp_path / "b.tfrecord.gz", records[4:])
    assert zipped.read_bytes()[:2] == b"\x1f\x8b"  # really gzipped
    assert list(skew.read_records([str(plain), str(zipped)])) == records


# --- what is compared, and how --------------------------------------------------------

def test_the_comparing_schema_sets_each_kind_its_measure_and_threshold(tmp_path: Path):
    from tensorflow_metadata.proto.v0 import schema_pb2

    config = workspace_config(tmp_path, **{"skew.categorical_l_infinity": 0.25,
                                           "skew.numeric_jensen_shannon": 0.05})
    schema = schema_pb2.Schema()
    for name, kind in (("fare", schema_pb2.FLOAT), ("payment_type", schema_pb2.BYTES),
                       ("trip_start_hour", schema_pb2.INT), ("tips", schema_pb2.FLOAT),
                       ("trip_start_timestamp", schema_pb2.INT)):
        schema.feature.add(name=name, type=kind)
    original = schema.SerializeToString()
    comparing = skew.comparing_schema(schema, config)
    assert schema.SerializeToString() == original  # the version's schema is not touched
    features = {feature.name: feature for feature in comparing.feature}
    assert list(comparing.default_environment) == ["TRAINING", "SERVING"]
    assert list(features["tips"].not_in_environment) == ["SERVING"]  # the label
    assert features["trip_start_hour"].int_domain.is_categorical
    for name in ("payment_type", "trip_start_hour"):
        for comparator in (features[name].skew_comparator, features[name].drift_comparator):
            assert comparator.infinity_norm.threshold == 0.25
            assert not comparator.HasField("jensen_shannon_divergence")
    for comparator in (features["fare"].skew_comparator, features["fare"].drift_comparator):
        assert comparator.jensen_shannon_divergence.threshold == 0.05
        assert not comparator.HasField("infinity_norm")
    for name in ("tips", "trip_start_timestamp"):  # the label, a column no model reads
        assert not features[name].HasField("skew_comparator")
        assert not features[name].HasField("drift_comparator")
    assert not features["trip_start_timestamp"].int_domain.is_categorical


def test_a_shift_is_exceeded_only_past_its_threshold():
    at = skew.Shift("fare", "Jensen-Shannon", 0.1, 0.1)
    past = skew.Shift("payment_type", "L-infinity", 0.34567, 0.1)
    assert not at.exceeded and past.exceeded
    assert at.line() == "fare: Jensen-Shannon 0.1000 (threshold 0.1) ok"
    assert past.line() == "payment_type: L-infinity 0.3457 (threshold 0.1) SHIFTED"
    report = skew.SkewReport(2, 10, ["a.tfrecord"], [at, past], [], ["feature 'x': new"])
    assert report.problems == ["skew: payment_type: L-infinity 0.3457 (threshold 0.1) "
                               "SHIFTED", "anomaly: feature 'x': new"]
    assert report.lines()[0] == "10 requests (1 files) against the training data of version 2"
    assert report.lines()[-1] == "2 problem(s)"
    document = report.to_json()
    assert [s["exceeded"] for s in document["skew"]] == [False, True]
    assert document["problems"] == report.problems


# --- skew against a served version's training data ------------------------------------

def test_requests_like_the_training_data_show_no_skew(served, tmp_path: Path):
    log = write_log(tmp_path / "log", training_rows())
    found = skew.skew(served, str(log))
    assert found.version == 1  # the served one: the newest, no models.config
    assert found.requests == TRAINING_ROWS and len(found.files) == 2
    shifts = by_feature(found.skew)
    assert set(shifts) == {"fare", "payment_type", "trip_start_hour"}
    assert shifts["fare"].measure == "Jensen-Shannon"
    assert shifts["payment_type"].measure == "L-infinity"
    assert shifts["trip_start_hour"].measure == "L-infinity"  # an integer category
    assert all(s.value == pytest.approx(0, abs=1e-9) and s.threshold == pytest.approx(0.1)
               for s in found.skew)
    assert found.anomalies == []  # no label in requests is right when serving
    assert found.drift == [] and found.problems == []
    assert found.lines()[-1] == "No skew, drift or anomaly past the thresholds."


def test_a_shifted_number_and_a_new_category_are_named(served, tmp_path: Path):
    log = write_log(tmp_path / "log", shifted(training_rows()))
    found = skew.skew(served, str(log))
    shifts = by_feature(found.skew)
    assert {s.feature for s in found.skew if s.exceeded} == {"fare", "payment_type"}
    assert shifts["payment_type"].value == pytest.approx(0.5)  # Crypto: 0 % -> 50 %
    assert shifts["fare"].value > 0.5
    assert shifts["trip_start_hour"].value == pytest.approx(0, abs=1e-9)
    assert any("payment_type" in a and "Crypto" in a for a in found.anomalies), \
        found.anomalies
    assert [p.split(":")[0] for p in found.problems] == ["skew", "skew"] + \
        ["anomaly"] * len(found.anomalies)
    document = json.loads(json.dumps(found.to_json()))
    assert {s["feature"] for s in document["skew"] if s["exceeded"]} == {"fare",
                                                                         "payment_type"}


def test_the_thresholds_are_the_configs(served, tmp_path: Path):
    """Half the payments in a new category is within a limit of 0.6; the fares still are
    not within 0.1."""
    config = served.model_copy(deep=True)
    config.skew.categorical_l_infinity = 0.6
    log = write_log(tmp_path / "log", shifted(training_rows()))
    shifts = by_feature(skew.skew(config, str(log)).skew)
    assert (shifts["payment_type"].threshold, shifts["payment_type"].exceeded) == \
        (pytest.approx(0.6), False)
    assert (shifts["fare"].threshold, shifts["fare"].exceeded) == (pytest.approx(0.1), True)


def test_drift_between_two_request_logs(served, tmp_path: Path):
    before = write_log(tmp_path / "before", training_rows())
    after = write_log(tmp_path / "after", [{**row, "payment_type": "Cash"}
                                           for row in training_rows()])
    found = skew.skew(served, str(after), previous_dir=str(before))
    drift = by_feature(found.drift)
    assert [s.feature for s in found.drift if s.exceeded] == ["payment_type"]
    assert drift["payment_type"].measure == "L-infinity"
    assert drift["payment_type"].value == pytest.approx(0.5, abs=0.1)  # Cash: ~50 % -> 100 %
    assert any(p.startswith("drift: payment_type: L-infinity") for p in found.problems)


def test_a_version_that_is_missing_or_has_no_record_is_one_clear_error(tmp_path: Path):
    config = workspace_config(tmp_path)
    log = write_log(tmp_path / "log", training_rows(10))
    with pytest.raises(skew.SkewError) as nothing:
        skew.skew(config, str(log))
    assert str(nothing.value) == f"no version is served from {config.serving_model_dir}"
    write_manifest(config, 1, "/models/elsewhere", "kfp-run-1")  # a Kubeflow run's push
    with pytest.raises(skew.SkewError) as unknown:
        skew.skew(config, str(log), version=4)
    assert str(unknown.value) == (f"version 4 is not in {config.serving_model_dir} "
                                  "(versions there: 1)")
    with pytest.raises(skew.SkewError) as no_record:
        skew.skew(config, str(log))
    assert str(no_record.value).startswith("no record of the run behind version 1 on this "
                                           "machine: ")
