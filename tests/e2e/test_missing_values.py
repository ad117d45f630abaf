"""A CSV that writes missing values as `NA` (R's and pandas' convention), `N/A` or nothing,
in number and text columns, with the label as its first column: it trains by default; a
marker the defaults do not know is named by the data gate with the key that fixes it."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline.definition.config import load_config
from pipeline.local.run import run_pipeline
from tests.conftest import write_config

pytestmark = pytest.mark.slow

PENGUIN_CONFIG = {
    "pipeline": {"name": "penguins"},
    "data": {"input_base": "data", "span_pattern": "day-{SPAN}/*.csv"},
    "features": {"numeric": ["bill_length_mm", "flipper_length_mm", "body_mass_g"],
                 "categorical": ["island", "sex"]},
    "label": {"column": "species", "task": "multiclass_classification"},
    "training": {"train_steps": 300, "eval_steps": 10, "batch_size": 32,
                 "learning_rate": 0.01, "hidden_units": [16]},
    "evaluation": {"thresholds": [{"metric": "SparseCategoricalAccuracy", "lower_bound": 0.6}]},
    "serving": {"model_name": "penguins"},
}
MARKERS = ["NA", "N/A", ""]


def write_penguins(path: Path, rows: int, unknown_marker: str = "") -> None:
    """Species first; gaps written as NA, N/A or nothing (and `unknown_marker`, if any,
    in the body mass column)."""
    rng = np.random.default_rng(7)
    kinds = {"Adelie": (38.8, 190, 3700, "Torgersen"), "Gentoo": (47.5, 217, 5076, "Biscoe"),
             "Chinstrap": (48.8, 196, 3733, "Dream")}

    def gap(value):
        if rng.random() < 0.08:
            return MARKERS[int(rng.integers(len(MARKERS)))]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["species", "island", "bill_length_mm", "flipper_length_mm",
                         "body_mass_g", "sex"])
        for index in range(rows):
            species = str(rng.choice(list(kinds)))
            bill, flipper, mass, island = kinds[species]
            body_mass = gap(int(rng.normal(mass, 300)))
            if unknown_marker and index % 25 == 0:
                body_mass = unknown_marker
            writer.writerow([species, gap(island), gap(round(rng.normal(bill, 2.5), 1)),
                             gap(int(rng.normal(flipper, 6))), body_mass,
                             gap(str(rng.choice(["male", "female"])))])


def run(workspace: Path, **changes):
    config = load_config(write_config(workspace, base=PENGUIN_CONFIG, changes=changes))
    return config, run_pipeline(config)


def test_an_unknown_marker_is_named_with_the_key_that_fixes_it(workspace: Path):
    write_penguins(workspace / "data" / "day-1" / "penguins.csv", rows=600,
                   unknown_marker="?")
    _, report = run(workspace)
    assert not report.succeeded
    # NA, N/A and empty cells are missing by default: only '?' is text in a number column
    lines = [line for line in report.error.splitlines() if "body_mass_g" in line]
    assert lines and all("declared numeric but holds text in" in line for line in lines)
    assert all("'?' (" in line and "'NA'" not in line for line in lines)
    assert all(line.endswith("""if '?' means "missing", add it to data.missing_values""")
               for line in lines)
    assert not [line for line in report.error.splitlines() if "bill_length_mm" in line]


def test_with_the_marker_declared_it_trains_and_pushes(workspace: Path):
    write_penguins(workspace / "data" / "day-1" / "penguins.csv", rows=600,
                   unknown_marker="?")
    config, report = run(workspace, **{"data.missing_values": ["NA", "N/A", "?"]})
    assert report.succeeded, report.error
    assert report.blessed is True, [c.failures for c in report.metrics]
    assert report.pushed_version == "1"
    assert config.data.missing_values == ["NA", "N/A", "?"]
