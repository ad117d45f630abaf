"""DataValidationGate: stops a run before training when the data breaks its contract.

TFX's ExampleValidator records anomalies but never fails, and against a schema inferred
from the same span it cannot notice a column that disappeared or changed type. This gate
reads ExampleValidator's anomalies *and* checks the statistics against the features the
config declares (present, with a usable type), and fails with one line per problem,
naming the split, the feature and what is wrong. Transform depends on it, so nothing is
trained or pushed from bad data.
"""

import collections
import json
import os
from typing import Callable, Iterable, Mapping, Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils

from models import features as feature_lib

ANOMALIES_FILE = "SchemaDiff.pb"
NUMERIC_TYPES = {statistics_pb2.FeatureNameStatistics.INT,
                 statistics_pb2.FeatureNameStatistics.FLOAT}
MISSING_VALUES_KEY = "data.missing_values"
SAMPLES_SHOWN = 3
# Texts people write for "no value"; a number column holding one of these is more likely
# missing data than a wrong column.
_MARKER_WORDS = {"na", "n/a", "nan", "none", "null", "nil", "missing", "unknown", "?", "-",
                 "--", ".", "#n/a", "#na", "n.a.", "not available", "<na>", "undefined"}

# column -> how many cells of each non-numeric text it holds
TextCounts = Mapping[str, collections.Counter]


def looks_like_a_marker(text: str) -> bool:
    return text.strip().lower() in _MARKER_WORDS


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def text_cells(records: Iterable[bytes], names: Iterable[str]) -> dict[str, collections.Counter]:
    """The non-numeric texts of the columns `names` in serialized tf.Examples, counted.

    Read only when a number column turned out to hold text, to say which text and how
    often (the statistics say only that the column became STRING)."""
    import tensorflow as tf

    counts = {name: collections.Counter() for name in names}
    for record in records:
        features = tf.train.Example.FromString(record).features.feature
        for name, counter in counts.items():
            if name in features:
                for value in features[name].bytes_list.value:
                    if not _is_number(value):
                        counter[value.decode("utf-8", "replace")] += 1
    return counts


def _text_problem(name: str, kind: str, type_name: str,
                  counts: Optional[collections.Counter], num_examples: int) -> str:
    if not counts:
        return (f"feature '{name}': declared {kind} but holds {type_name} values "
                "(a number column with text in it?)")
    samples = ", ".join(f"'{text}' ({count})" for text, count in
                        counts.most_common(SAMPLES_SHOWN))
    rows = sum(counts.values())
    problem = (f"feature '{name}': declared {kind} but holds text in {rows} of "
               f"{num_examples} rows: {samples}")
    markers = [text for text in counts if looks_like_a_marker(text)]
    if markers:
        listed = ", ".join(repr(text) for text in markers[:SAMPLES_SHOWN])
        return problem + f"; if {listed} means \"missing\", add it to {MISSING_VALUES_KEY}"
    return problem + "; fix these cells, or declare the column under features.categorical"


class DataValidationError(RuntimeError):
    """The data of this run cannot be trained on; the message lists every problem."""


def _common_stats(feature: statistics_pb2.FeatureNameStatistics
                  ) -> statistics_pb2.CommonStatistics:
    kind = feature.WhichOneof("stats")  # num_stats, string_stats, bytes_stats, ...
    return getattr(feature, kind).common_stats if kind else statistics_pb2.CommonStatistics()


def text_in_numbers(stats: statistics_pb2.DatasetFeatureStatistics,
                    contract: dict[str, str]) -> "list[str]":
    """Declared number columns (features or a numeric label) that the data made text."""
    by_name = {(f.path.step[0] if f.path.step else f.name): f for f in stats.features}
    return [name for name, kind in contract.items()
            if kind in feature_lib.NUMERIC_KINDS and name in by_name
            and _common_stats(by_name[name]).num_non_missing
            and by_name[name].type not in NUMERIC_TYPES]


def contract_problems(stats: statistics_pb2.DatasetFeatureStatistics,
                      contract: dict[str, str],
                      texts: Optional[TextCounts] = None) -> "list[str]":
    """Declared features that are missing, empty in every row, or whose values cannot be
    what was declared; and labels left empty (a row without a label cannot be learned
    from). `stats` describes a split with rows (`split_problems` checks that first);
    `texts` holds the text found in number columns, to show it (`text_cells`)."""
    by_name = {(f.path.step[0] if f.path.step else f.name): f for f in stats.features}
    problems = []
    for name, kind in contract.items():
        if name not in by_name:
            problems.append(f"feature '{name}': column is missing (declared {kind})")
            continue
        feature = by_name[name]
        common = _common_stats(feature)
        if common.num_non_missing == 0:  # an empty column is typed STRING: say empty
            what = "label" if kind in feature_lib.LABEL_KINDS else "feature"
            problems.append(f"{what} '{name}': no value in any of the {stats.num_examples} "
                            f"rows (declared {kind})")
            continue
        if kind in feature_lib.NUMERIC_KINDS and feature.type not in NUMERIC_TYPES:
            type_name = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
            problems.append(_text_problem(name, kind, type_name, (texts or {}).get(name),
                                          int(stats.num_examples)))
        if kind in feature_lib.LABEL_KINDS:
            empty = int(common.num_missing)
            if empty:
                problems.append(f"label '{name}': no value in {empty} of "
                                f"{stats.num_examples} rows")
    return problems


def anomaly_problems(anomalies: anomalies_pb2.Anomalies) -> "list[str]":
    problems = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join((r.description or r.short_description).strip()
                            for r in info.reason)
        problems.append(f"feature '{name}': {info.short_description or 'anomaly'}"
                        + (f" ({reasons})" if reasons else ""))
    for reason in anomalies.dataset_anomaly_info.reason:
        problems.append(f"dataset: {reason.description or reason.short_description}")
    return problems


def split_problems(stats: statistics_pb2.DatasetFeatureStatistics,
                   anomalies: anomalies_pb2.Anomalies, contract: dict[str, str],
                   texts: Optional[Callable[[list[str]], TextCounts]] = None) -> "list[str]":
    """Everything wrong with one split; a split without rows is that one problem, not a
    missing column per declared feature. `texts(columns)` reads the text in number
    columns, asked only when there is some."""
    if stats.num_examples == 0:
        return ["no rows: the span's files hold no data rows for this split"]
    suspects = text_in_numbers(stats, contract)
    found = texts(suspects) if texts and suspects else None
    return contract_problems(stats, contract, found) + anomaly_problems(anomalies)


def _split_records(examples, split: str) -> Iterable[bytes]:
    import tensorflow as tf

    files = tfx.dsl.io.fileio.glob(
        os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        yield record.numpy()


def _load_anomalies(artifact, split: str) -> anomalies_pb2.Anomalies:
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    with tfx.dsl.io.fileio.open(path, "rb") as handle:
        anomalies.ParseFromString(handle.read())
    return anomalies


@tfx.dsl.components.component
def DataValidationGate(
        examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
        statistics: tfx.dsl.components.InputArtifact[
            tfx.types.standard_artifacts.ExampleStatistics],
        anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
        contract: tfx.dsl.components.Parameter[str]) -> None:
    """Raises DataValidationError listing every problem; returns quietly on clean data.

    `contract` is JSON mapping each declared column to its kind (numeric, bucketized,
    categorical, label, numeric_label).

    Raises:
        DataValidationError: any split has a problem (no rows; a declared column
            missing, empty or not of its kind; labels left empty; an anomaly the
            ExampleValidator found); one line per problem, and the run stops before
            Transform.
    """
    expected = json.loads(contract)
    problems = []
    for split in artifact_utils.decode_split_names(statistics.split_names):
        stats = stats_artifact_utils.load_statistics(statistics, split).proto().datasets[0]
        problems += [f"split {split}: {p}" for p in split_problems(
            stats, _load_anomalies(anomalies, split), expected,
            lambda columns, split=split: text_cells(_split_records(examples, split), columns))]
    if problems:
        raise DataValidationError("data validation failed:\n  - " + "\n  - ".join(problems))
