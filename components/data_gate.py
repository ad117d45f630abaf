"""DataValidationGate: stops a run before training when the data breaks its contract.

TFX's ExampleValidator records anomalies but never fails, and against a schema inferred
from the same span it cannot notice a column that disappeared or changed type. This gate
reads ExampleValidator's anomalies *and* checks the statistics against the features the
config declares (present, with a usable type), and fails with one line per problem,
naming the split, the feature and what is wrong. Transform depends on it, so nothing is
trained or pushed from bad data.
"""

import json
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils

from models import features as feature_lib

ANOMALIES_FILE = "SchemaDiff.pb"
NUMERIC_TYPES = {statistics_pb2.FeatureNameStatistics.INT,
                 statistics_pb2.FeatureNameStatistics.FLOAT}


class DataValidationError(RuntimeError):
    """The data of this run cannot be trained on; the message lists every problem."""


def _common_stats(feature: statistics_pb2.FeatureNameStatistics
                  ) -> statistics_pb2.CommonStatistics:
    kind = feature.WhichOneof("stats")  # num_stats, string_stats, bytes_stats, ...
    return getattr(feature, kind).common_stats if kind else statistics_pb2.CommonStatistics()


def contract_problems(stats: statistics_pb2.DatasetFeatureStatistics,
                      contract: dict[str, str]) -> "list[str]":
    """Declared features that are missing, empty in every row, or whose values cannot be
    what was declared; and labels left empty (a row without a label cannot be learned
    from). `stats` describes a split with rows (`split_problems` checks that first)."""
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
            problems.append(f"feature '{name}': declared {kind} but holds {type_name} "
                            "values (a number column with text in it?)")
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
                   anomalies: anomalies_pb2.Anomalies, contract: dict[str, str]) -> "list[str]":
    """Everything wrong with one split; a split without rows is that one problem, not a
    missing column per declared feature."""
    if stats.num_examples == 0:
        return ["no rows: the span's files hold no data rows for this split"]
    return contract_problems(stats, contract) + anomaly_problems(anomalies)


def _load_anomalies(artifact, split: str) -> anomalies_pb2.Anomalies:
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    with tfx.dsl.io.fileio.open(path, "rb") as handle:
        anomalies.ParseFromString(handle.read())
    return anomalies


@tfx.dsl.components.component
def DataValidationGate(
        statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
        anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
        contract: tfx.dsl.components.Parameter[str]) -> None:
    """Raises DataValidationError listing every problem; returns quietly on clean data.

    `contract` is JSON mapping each declared column to its kind (numeric, bucketized,
    categorical, label, numeric_label).
    """
    expected = json.loads(contract)
    problems = []
    for split in artifact_utils.decode_split_names(statistics.split_names):
        stats = stats_artifact_utils.load_statistics(statistics, split).proto().datasets[0]
        problems += [f"split {split}: {p}" for p in split_problems(
            stats, _load_anomalies(anomalies, split), expected)]
    if problems:
        raise DataValidationError("data validation failed:\n  - " + "\n  - ".join(problems))
