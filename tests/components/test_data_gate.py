"""The data gate's checks on statistics and anomalies, on real TFDV protos."""
from __future__ import annotations

from collections import Counter

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components.data_gate import (anomaly_problems, contract_problems, split_problems,
                                  text_cells)

Stats = statistics_pb2.FeatureNameStatistics


def stats_with(**types: int) -> statistics_pb2.DatasetFeatureStatistics:
    """Statistics of 100 rows, each column of the given type with a value in every row."""
    stats = statistics_pb2.DatasetFeatureStatistics(num_examples=100)
    for name, kind in types.items():
        feature = stats.features.add(type=kind)
        feature.path.step.append(name)
        common(feature).num_non_missing = 100
    return stats


def common(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    numeric = feature.type in (Stats.INT, Stats.FLOAT)
    return (feature.num_stats if numeric else feature.string_stats).common_stats


def test_clean_data_has_no_problems():
    stats = stats_with(fare=Stats.FLOAT, hour=Stats.INT, company=Stats.STRING, tips=Stats.FLOAT)
    contract = {"fare": "numeric", "hour": "categorical", "company": "categorical",
                "tips": "numeric_label"}
    assert contract_problems(stats, contract) == []


def test_missing_column_is_named():
    assert contract_problems(stats_with(fare=Stats.FLOAT), {"fare": "numeric",
                                                            "company": "categorical"}) == [
        "feature 'company': column is missing (declared categorical)"]


def test_text_in_a_numeric_column_is_named():
    problems = contract_problems(stats_with(trip_miles=Stats.STRING),
                                 {"trip_miles": "bucketized"})
    assert problems == ["feature 'trip_miles': declared bucketized but holds STRING values "
                        "(a number column with text in it?)"]


def test_categorical_columns_accept_numbers_and_text():
    stats = stats_with(area=Stats.INT, kind=Stats.STRING)
    assert contract_problems(stats, {"area": "categorical", "kind": "categorical"}) == []


def test_anomalies_are_listed_with_feature_and_reason():
    # TFDV's descriptions end in a space, as here
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["payment_type"]
    info.short_description = "Unexpected string values"
    info.reason.add(description="Examples contain values missing from the schema: Bitcoin. ")
    assert anomaly_problems(anomalies) == [
        "feature 'payment_type': Unexpected string values (Examples contain values missing "
        "from the schema: Bitcoin.)"]


def test_rows_without_a_label_are_reported():
    stats = stats_with(fare=Stats.FLOAT, tips=Stats.FLOAT)
    common(stats.features[1]).num_non_missing = 97
    common(stats.features[1]).num_missing = 3
    assert contract_problems(stats, {"fare": "numeric", "tips": "numeric_label"}) == [
        "label 'tips': no value in 3 of 100 rows"]


def test_missing_feature_values_are_allowed():
    stats = stats_with(fare=Stats.FLOAT, company=Stats.STRING)
    stats.features[0].num_stats.common_stats.num_missing = 40
    stats.features[1].string_stats.common_stats.num_missing = 40
    assert contract_problems(stats, {"fare": "numeric", "company": "categorical"}) == []


def test_a_column_empty_in_every_row_is_called_empty_not_text():
    # TFDV types a column without any value STRING; "holds STRING values" would mislead
    stats = stats_with(fare=Stats.STRING, company=Stats.STRING, tips=Stats.STRING)
    for feature in stats.features:
        common(feature).num_non_missing = 0
        common(feature).num_missing = 100
    assert contract_problems(stats, {"fare": "numeric", "company": "categorical",
                                     "tips": "numeric_label"}) == [
        "feature 'fare': no value in any of the 100 rows (declared numeric)",
        "feature 'company': no value in any of the 100 rows (declared categorical)",
        "label 'tips': no value in any of the 100 rows (declared numeric_label)"]


def test_a_split_without_rows_is_one_problem_not_one_per_feature():
    empty = statistics_pb2.DatasetFeatureStatistics(num_examples=0)
    anomalies = anomalies_pb2.Anomalies()
    anomalies.dataset_anomaly_info.reason.add(description="no examples")
    assert split_problems(empty, anomalies, {"fare": "numeric", "tips": "numeric_label"}) == [
        "no rows: the span's files hold no data rows for this split"]


def test_a_split_with_rows_gets_contract_and_anomaly_problems():
    stats = stats_with(fare=Stats.STRING)
    anomalies = anomalies_pb2.Anomalies()
    anomalies.anomaly_info["fare"].short_description = "Unexpected data type"
    assert split_problems(stats, anomalies, {"fare": "numeric", "tips": "label"}) == [
        "feature 'fare': declared numeric but holds STRING values (a number column with "
        "text in it?)",
        "feature 'tips': column is missing (declared label)",
        "feature 'fare': Unexpected data type"]


def example(**values: bytes) -> bytes:
    import tensorflow as tf

    features = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for name, value in values.items()}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_the_text_in_a_number_column_is_counted():
    records = [example(bill=b"39.1", island=b"Dream"), example(bill=b"?"),
               example(bill=b"?", island=b"NA"), example(bill=b"40,2"), example(island=b"x")]
    counts = text_cells(records, ["bill"])
    assert counts == {"bill": Counter({"?": 2, "40,2": 1})}


def test_text_that_reads_as_missing_points_to_the_key_that_fixes_it():
    stats = stats_with(bill=Stats.STRING)
    problems = contract_problems(stats, {"bill": "numeric"},
                                 {"bill": Counter({"?": 2, "missing": 1})})
    assert problems == ["feature 'bill': declared numeric but holds text in 3 of 100 rows: "
                        "'?' (2), 'missing' (1); if '?', 'missing' means \"missing\", add it "
                        "to data.missing_values"]


def test_other_text_in_a_number_column_is_shown_with_the_other_fix():
    problems = contract_problems(stats_with(bill=Stats.STRING), {"bill": "numeric"},
                                 {"bill": Counter({"40,2": 1, "39,1": 1})})
    assert problems == ["feature 'bill': declared numeric but holds text in 2 of 100 rows: "
                        "'40,2' (1), '39,1' (1); fix these cells, or declare the column "
                        "under features.categorical"]


def test_the_examples_are_read_only_when_a_number_column_holds_text():
    asked = []

    def texts(columns):
        asked.append(columns)
        return {"bill": Counter({"?": 1})}

    anomalies = anomalies_pb2.Anomalies()
    clean = stats_with(bill=Stats.FLOAT, island=Stats.STRING)
    assert split_problems(clean, anomalies, {"bill": "numeric", "island": "categorical"},
                          texts) == []
    assert asked == []
    broken = stats_with(bill=Stats.STRING, island=Stats.STRING)
    found = split_problems(broken, anomalies, {"bill": "numeric", "island": "categorical"},
                           texts)
    assert asked == [["bill"]] and "holds text in 1 of 100 rows: '?' (1)" in found[0]
