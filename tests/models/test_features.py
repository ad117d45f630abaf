"""Feature declarations as Transform and Trainer receive them."""
import pytest

from models import features


def spec(**label):
    return features.FeatureSpec.from_custom_config({
        "features": {"numeric": ["fare"], "categorical": ["company"],
                     "bucketized": {"lat": 10}},
        "label": {"column": "tips", "task": features.BINARY, "positive_above": 0.0,
                  "positive_value": None, "class_names": None, **label}})


def test_names_in_a_stable_order():
    assert spec().names == ("fare", "lat", "company")


def test_kind_of_each_feature():
    declared = spec()
    assert [declared.kind_of(n) for n in declared.names] == [
        features.NUMERIC, features.BUCKETIZED, features.CATEGORICAL]
    with pytest.raises(KeyError, match="'tips' is not a declared feature"):
        declared.kind_of("tips")


def test_label_key_and_class_names():
    assert spec().label_key == "tips_xf"
    assert spec().label.binary_class_names == ("0", "1")
    assert spec(class_names=["no", "yes"]).label.binary_class_names == ("no", "yes")
    assert spec().label.is_classification
    assert not spec(task=features.REGRESSION, positive_above=None).label.is_classification
