"""Labels known later (`serving/labels.py`): the body's lines, the predicted class they
are compared with, and the folder that keeps them for `mlops span-from-requests`."""
from __future__ import annotations

import numpy as np
import pytest

from serving.errors import Code, ServingError
from serving.labels import (LabelFolder, normalise_label, parse_label_lines,
                            predicted_label)


def test_lines_give_keys_and_labels_in_one_form():
    body = b'{"key": "a", "label": 1}\n\n{"key": "b", "label": "0"}\n{"key": "c", "label": true}'
    assert parse_label_lines(body) == [("a", "1"), ("b", "0"), ("c", "1")]
    assert [normalise_label(v) for v in (1.0, "1.0", b"yes", 2.5, False)] == [
        "1", "1", "yes", "2.5", "0"]


@pytest.mark.parametrize("body, says", [
    (b'{"key": "a", "label": 1}\nnot json', "labels line 2: not JSON"),
    (b'{"label": 1}', 'labels line 1: expected {"key"'),
    (b'{"key": "' + b"k" * 300 + b'", "label": 1}', "1-256 characters"),
    (b'{"key": "a", "label": [1]}', 'labels line 1: "label" must be a string'),
    (b"\n\n", "the body holds no line"),
])
def test_a_bad_body_is_refused_naming_the_line(body, says):
    with pytest.raises(ServingError) as caught:
        parse_label_lines(body)
    assert caught.value.code == Code.INVALID_ARGUMENT and says in caught.value.message


def test_the_predicted_class_of_a_one_row_answer():
    assert predicted_label({"scores": np.array([[0.2, 0.8]])}) == "1"
    assert predicted_label({"classes": np.array([[b"no", b"yes"]]),
                            "scores": np.array([[0.7, 0.3]])}) == "no"
    assert predicted_label({"outputs": np.array([[0.62]])}) == "1"  # a probability
    assert predicted_label({"scores": np.array([[0.2, 0.8], [0.9, 0.1]])}) is None  # 2 rows
    assert predicted_label({"classes": np.array([[b"a"]])}) is None


def test_posted_labels_are_kept_and_dropped_files_read_once(tmp_path):
    folder = LabelFolder(str(tmp_path))
    kept = folder.keep("m", [("a", "1"), ("b", "0")])
    assert open(kept).read() == "request_key,label\na,1\nb,0\n"
    assert folder.new_files("m") == []  # its own file is not read back
    dropped = folder.folder("m") / "from-crm.csv"
    dropped.write_text("request_key,label,extra\nc,1,x\nd,,x\n")
    (folder.folder("m") / "wrong.csv").write_text("id,outcome\n1,2\n")
    found = dict(folder.new_files("m"))
    assert found == {dropped: [("c", "1")], folder.folder("m") / "wrong.csv": []}
    assert folder.new_files("m") == []
