"""Labels that arrive after the answers, joined by request key.

A client that learns the truth later (the taxi trip ended, the customer churned) sends it
as JSON lines to ``POST /v1/models/<name>/labels`` (`{"key": "...", "label": ...}` per
line, the key being the request's ``X-Request-Key``), or drops a CSV file
(``request_key,label``) into the model's labels folder. Two uses:

- kept as CSV files in ``<request_log_dir>/<model>/labels/``, beside the sampled requests
  they label, so `mlops span-from-requests --labels <that folder>` makes the next span
  from served traffic and its labels;
- joined to the version that answered the request during a rollout (`rollout.window`), for
  the online quality check.

Bounded like every request: the body is within ``--max_request_bytes``; a key is at most
`MAX_KEY_CHARS` characters.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from serving.errors import invalid_argument

KEY_COLUMN, LABEL_COLUMN = "request_key", "label"
MAX_KEY_CHARS = 256
FOLDER = "labels"
POSTED_PREFIX = "posted-"

Labels = list[tuple[str, str]]  # (request key, label), in the order given


def normalise_label(value) -> str:
    """A label as text, so that 1, 1.0, "1", true and "1.0" compare equal where they mean
    the same class: integral numbers without a fraction, booleans as 1/0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return {"true": "1", "false": "0"}.get(text.lower(), text)
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return text


def parse_label_lines(body: bytes) -> Labels:
    """The (key, label) pairs of a labels request body.

    Raises:
        ServingError: INVALID_ARGUMENT naming the line that is not a JSON object with a
            non-empty string `key` (at most MAX_KEY_CHARS) and a scalar `label`, or an
            empty body.
    """
    pairs: Labels = []
    for number, line in enumerate(body.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise invalid_argument(f"labels line {number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("key"), str) or \
                not record["key"] or len(record["key"]) > MAX_KEY_CHARS:
            raise invalid_argument(f"labels line {number}: expected {{\"key\": \"<request "
                                   f"key, 1-{MAX_KEY_CHARS} characters>\", \"label\": ...}}")
        label = record.get("label")
        if label is None or isinstance(label, (dict, list)):
            raise invalid_argument(f"labels line {number}: \"label\" must be a string, "
                                   "number or boolean")
        pairs.append((record["key"], normalise_label(label)))
    if not pairs:
        raise invalid_argument("labels: the body holds no line (JSON lines of "
                               "{\"key\": ..., \"label\": ...})")
    return pairs


def predicted_label(outputs: Mapping[str, np.ndarray]) -> Optional[str]:
    """The class a one-row answer predicts, in the form labels take: `classes` at the
    highest score when the answer has both; else the index of the highest of several
    `scores`/`probabilities`; else a single score or output rounded at 0.5 (a binary
    classifier's probability). None when the answer is not one row of those."""
    scores = next((np.asarray(outputs[name]) for name in ("scores", "probabilities",
                                                          "outputs", "predictions")
                   if name in outputs), None)
    if scores is None or scores.dtype.kind not in "fiu" or not scores.size or \
            scores.shape[0] != 1:
        return None
    row = scores.reshape(1, -1)[0]
    if row.size == 1:
        return "1" if row[0] >= 0.5 else "0"
    best = int(np.argmax(row))
    classes = outputs.get("classes")
    if classes is not None:
        classes = np.asarray(classes).reshape(1, -1)[0]
        if classes.size == row.size:
            return normalise_label(classes[best])
    return str(best)


class LabelFolder:
    """`<directory>/<model>/labels/`: where posted labels are kept and CSV files dropped
    by people are picked up (each once per server run)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._seen: set[tuple[str, float, int]] = set()

    def folder(self, model_name: str) -> Path:
        return Path(self.directory) / model_name / FOLDER

    def keep(self, model_name: str, pairs: Labels) -> str:
        """Writes posted labels as a new CSV file (whole, under its final name only once
        complete); returns its path.

        Raises:
            OSError: the folder cannot be written.
        """
        folder = self.folder(model_name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{POSTED_PREFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-" \
                        f"{os.getpid()}-{time.monotonic_ns() % 10**9:09d}.csv"
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([KEY_COLUMN, LABEL_COLUMN])
        writer.writerows(pairs)
        staging = folder / f".{path.name}"
        staging.write_text(text.getvalue(), encoding="utf-8")
        os.replace(staging, path)
        self._seen.add(self._mark(path))
        return str(path)

    def new_files(self, model_name: str) -> list[tuple[Path, Labels]]:
        """CSV files not read yet (a changed file is read again), with their labels; a file
        without the two columns is skipped and named in the result with no labels."""
        folder = self.folder(model_name)
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.glob("*.csv")):
            mark = self._mark(path)
            if mark in self._seen:
                continue
            self._seen.add(mark)
            found.append((path, read_label_file(path)))
        return found

    @staticmethod
    def _mark(path: Path) -> tuple[str, float, int]:
        stat = path.stat()
        return (path.name, stat.st_mtime, stat.st_size)


def read_label_file(path: Path) -> Labels:
    """(key, label) rows of a `request_key,label` CSV; [] when it lacks either column or
    cannot be read (a half-copied file is read again once it changes)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {KEY_COLUMN, LABEL_COLUMN} <= set(reader.fieldnames or ()):
                return []
            return [(row[KEY_COLUMN], normalise_label(row[LABEL_COLUMN])) for row in reader
                    if row[KEY_COLUMN] and row[LABEL_COLUMN] not in ("", None)]
    except (OSError, ValueError):
        return []
