"""`mlops history` and `mlops lineage` on a real metadata store made by real runs: a
blessed and pushed run, a run refused by a named threshold, a second push; then the store
and the records removed, leaving the push manifests as the only trace."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import history, lineage, local
from pipeline.config import load_config
from tests.conftest import copy_taxi_span, mlops, write_config
from tests.test_pipeline_e2e import FAST_TRAINING, LENIENT, ROWS

pytestmark = pytest.mark.slow

STRICT = {"evaluation.thresholds": [{"metric": "BinaryAccuracy", "lower_bound": 1.0}]}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """Three runs: span 1 pushed as version 1; span 2 refused (accuracy 1.0 asked); span 2 again,
    with the usual thresholds, pushed as version 2."""
    folder = tmp_path_factory.mktemp("history_site")
    (folder / "data").mkdir()
    copy_taxi_span(1, folder / "data", rows=ROWS)
    runs = []

    def run(**changes):
        config = load_config(write_config(folder, {**FAST_TRAINING, **LENIENT, **changes}))
        report = local.run_pipeline(config)
        assert report.succeeded, report.error
        runs.append(report)
        return config

    run()
    copy_taxi_span(2, folder / "data", rows=ROWS)
    run(**STRICT)
    config = run()
    return {"folder": folder, "config": config, "runs": runs,
            "config_file": folder / "pipeline_config.yaml"}


def test_history_lists_every_run_newest_first_with_its_verdict(site):
    first, refused, second = site["runs"]
    entries = history.history(site["config"])
    assert [e.run_id for e in entries] == [second.run_id, refused.run_id, first.run_id]
    assert [e.pushed_version for e in entries] == [2, None, 1]
    assert [e.spans for e in entries] == ["2", "2", "1"]
    assert entries[1].blessed is False
    assert entries[1].verdict.startswith("binary_accuracy ")
    assert entries[1].verdict.endswith("is below the lower bound 1")
    assert entries[0].blessed is True and set(entries[0].metrics) == {"BinaryAccuracy", "AUC"}
    assert entries[0].verdict == "every threshold holds"
    assert all(e.source == "metadata" for e in entries)
    line = entries[1].line()
    assert f"run {refused.run_id}" in line and "not blessed: " in line


def test_history_on_the_command_line_as_text_and_json(site):
    text = mlops("history", "--config", str(site["config_file"]))
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == 3
    assert "pushed version 2" in text.stdout.splitlines()[0]
    limited = mlops("history", "--limit", "1", "--json", "--config", str(site["config_file"]))
    rows = json.loads(limited.stdout)
    assert len(rows) == 1 and rows[0]["pushed_version"] == 2
    page = mlops("history", "--html", "--config", str(site["config_file"]))
    path = Path(page.stdout.strip().removeprefix("History page: "))
    html = path.read_text()
    assert path.name == "history.html" and "<svg" in html and "Every run" in html
    assert all(run.run_id in html for run in site["runs"])
    assert "<script" not in html


def test_lineage_of_a_version_names_its_run_data_model_and_baseline(site):
    second = site["runs"][2]
    found = lineage.lineage(site["config"], 2)
    assert found.run_id == second.run_id
    assert found.run.span == 2 and found.run.model_uri == found.model_uri
    assert found.run.statistics_uri and found.run.schema_uri and found.run.evaluation_uri
    assert found.run.baseline_compared and found.run.baseline_version == 1
    text = "\n".join(found.lines())
    assert "compared with served version 1" in text and "blessed" in text
    cli = mlops("lineage", "2", "--json", "--config", str(site["config_file"]))
    assert json.loads(cli.stdout)["run"]["span"] == 2
    missing = mlops("lineage", "9", "--config", str(site["config_file"]))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: version 9 is not in ")
    assert "(versions there: 1, 2)" in missing.stderr


def test_with_the_store_gone_the_manifests_still_tell_what_was_pushed(site):
    """The last test: it removes the metadata store and the run records."""
    config = site["config"]
    Path(config.pipeline.metadata_path).unlink()
    shutil.rmtree(Path(config.pipeline.root) / ".mlops")
    entries = history.history(config)
    assert [(e.pushed_version, e.source) for e in entries] == [(2, "manifest"), (1, "manifest")]
    assert entries[0].run_id == site["runs"][2].run_id
    assert "(from the push manifest only; model " in entries[0].line()
    found = lineage.lineage(config, 1)
    assert found.run is None and "only the push manifest is known" in found.note
    assert found.model_uri == site["runs"][0].model_uri
