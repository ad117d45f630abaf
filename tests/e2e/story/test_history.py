"""`mlops history` and `mlops lineage` on the real metadata store the story's runs made
(tests/e2e/story/conftest.py: a push, a run refused by a named threshold, two runs stopped by
data validation, a second push, an unchanged re-run, a run on labelled served requests);
then, with the store and the records gone, the push manifests as the only trace."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.definition.config import load_config
from pipeline.records import history, lineage
from pipeline.records import html as pages
from tests.conftest import mlops_in_process, write_config
from tests.e2e.story.conftest import STEPS, Story

pytestmark = pytest.mark.slow


def test_history_lists_every_run_newest_first_with_its_verdict(story: Story):
    entries = history.history(story.config)
    assert [e.run_id for e in entries] == story.run_ids_newest_first()
    by_step = dict(zip(reversed(STEPS), entries))
    pushed = [story.runs[step].pushed_version for step in reversed(STEPS)]
    assert [e.pushed_version for e in entries] == [int(v) if v else None for v in pushed]
    assert [e.pushed_version for e in entries][1:] == [None, 2, None, None, None, 1]
    assert [e.spans for e in entries] == ["3", "2", "2", "2", "2", "1", "1"]
    refused = by_step["refused"]
    assert refused.blessed is False
    assert refused.verdict.startswith("binary_accuracy ")
    assert refused.verdict.endswith("is below the lower bound 1")
    second = by_step["second_push"]
    assert second.blessed is True and set(second.metrics) == {"BinaryAccuracy", "AUC"}
    assert second.verdict == "every threshold holds"
    assert all(e.source == "metadata" for e in entries)
    line = refused.line()
    assert f"run {refused.run_id}" in line and "not blessed: " in line
    stopped = by_step["missing_column"].line()
    assert "failed" in stopped and "pushed" not in stopped


def test_history_on_the_command_line_as_text_and_json(story: Story):
    text = mlops_in_process("history", "--config", str(story.config_file))
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == len(STEPS)
    assert "pushed version 2" in text.stdout.splitlines()[2]
    limited = mlops_in_process("history", "--limit", "3", "--json", "--config",
                               str(story.config_file))
    rows = json.loads(limited.stdout)
    assert len(rows) == 3 and rows[2]["pushed_version"] == 2
    page = mlops_in_process("history", "--html", "--config", str(story.config_file))
    path = Path(page.stdout.strip().removeprefix("History page: "))
    html = path.read_text()
    assert path.name == "history.html" and "<svg" in html and "Every run" in html
    assert all(run.run_id in html for run in story.runs.values())
    assert "<script" not in html


def test_history_lineage_and_the_report_tell_how_the_last_push_rolled_out(story: Story,
                                                                         tmp_path: Path):
    """The server's rollout of version 3 (tests/e2e/story/conftest.py `_roll_out`), as
    the records commands tell it."""
    newest = history.history(story.config)[0]
    assert newest.pushed_version == 3 and newest.rollout.startswith("promoted ")
    assert f"rollout {newest.rollout}" in newest.line()
    found = lineage.lineage(story.config, 3)
    assert found.rollout.outcome == "promoted" and found.rollout.by == "checks"
    text = "\n".join(found.lines())
    assert "rollout against version 2: promoted " in text, text
    as_json = json.loads(mlops_in_process("lineage", "3", "--json", "--config",
                                          str(story.config_file)).stdout)
    assert as_json["rollout"]["outcome"] == "promoted"
    assert lineage.lineage(story.config, 2).rollout is None  # pushed before rollouts were on
    # what `mlops report RUN --output FILE` writes (its console script: tests/pipeline/records)
    page = pages.write(story.config, pages.find(story.config, story.runs["from_requests"].run_id),
                       str(tmp_path / "report.html"))
    html = Path(page).read_text()
    assert 'id="rollout"' in html and "promoted" in html and "<svg" in html


def test_lineage_of_a_version_names_its_run_data_model_and_baseline(story: Story):
    second = story.runs["second_push"]
    found = lineage.lineage(story.config, 2)
    assert found.run_id == second.run_id
    assert found.run.span == 2 and found.run.model_uri == found.model_uri
    assert found.run.statistics_uri and found.run.schema_uri and found.run.evaluation_uri
    assert found.run.baseline_compared and found.run.baseline_version == 1
    text = "\n".join(found.lines())
    assert "compared with served version 1" in text and "blessed" in text
    cli = mlops_in_process("lineage", "2", "--json", "--config", str(story.config_file))
    assert json.loads(cli.stdout)["run"]["span"] == 2
    missing = mlops_in_process("lineage", "9", "--config", str(story.config_file))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: version 9 is not in ")
    there = ", ".join(map(str, story.served_after["from_requests"]))
    assert f"(versions there: {there})" in missing.stderr


def test_with_the_store_gone_the_manifests_still_tell_what_was_pushed(story: Story,
                                                                         tmp_path: Path):
    """The story's serving directory, copied where no metadata store or run record is."""
    shutil.copytree(Path(story.config.serving_model_dir).parent, tmp_path / "serving_models")
    config = load_config(write_config(tmp_path, {"data.input_base": str(story.folder / "data")}),
                         check_files=False)
    entries = history.history(config)
    pushed = sorted(story.served_after["from_requests"], reverse=True)
    assert [(e.pushed_version, e.source) for e in entries] == [(v, "manifest") for v in pushed]
    second = next(e for e in entries if e.pushed_version == 2)
    assert second.run_id == story.runs["second_push"].run_id
    assert "(from the push manifest only; model " in second.line()
    found = lineage.lineage(config, 1)
    assert found.run is None and "only the push manifest is known" in found.note
    assert found.model_uri == story.runs["first_push"].model_uri
