"""The version layout shared by the Pusher, the model repository and `mlops versions`."""
from __future__ import annotations

import sys

import pytest

from serving import versions


@pytest.mark.parametrize("name,number", [
    ("1", 1), ("17", 17), ("3/", 3), ("0", None), ("-1", None), (".staging-17-ab", None),
    ("1.5", None), ("models.config", None), (".last_version", None), ("", None)])
def test_only_positive_integers_are_versions(name, number):
    assert versions.version_number(name) == number


def test_versions_are_listed_in_numeric_order():
    assert versions.version_numbers(["10", "9", ".staging-1-x", "2/", "abc"]) == [2, 9, 10]


def test_manifests_and_records_that_cannot_be_read_are_none_or_zero():
    assert versions.parse_manifest('{"model_uri": "m", "version": 3}') == {
        "model_uri": "m", "version": 3}
    assert versions.parse_manifest("not json") is None
    assert versions.parse_manifest("[1, 2]") is None
    assert versions.parse_version_record("7\n") == 7
    assert versions.parse_version_record("") == 0
    assert versions.parse_version_record("garbage") == 0


def test_the_layout_module_imports_no_tensorflow():
    import subprocess

    done = subprocess.run([sys.executable, "-c", "import sys, serving.versions; "
                           "print('tensorflow' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
