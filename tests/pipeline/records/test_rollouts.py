"""`records.rollouts`: a version's automatic rollout summed up from made-up decision files
(`rollout_records`), the one reading that lineage, history and the report share.

What a reader must get right: the outcome, when and by what; for an abort the checks that
failed in the last interval; the intervals and the last weight; the champion it met (not
the one an end record names after it); a running rollout's weight now (from the state, as
the last step set it); and the newest rollout of a version number when there were two.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pipeline.definition.config import PipelineConfig, load_config
from pipeline.records import rollouts
from serving.rollout.records import PROGRESSING, RolloutState
from tests.pipeline.records.rollout_records import (
    aborted, at, check, diverging, end, interval, passing, promoted, start, write_decisions)


@pytest.fixture
def config(config_file: Path) -> PipelineConfig:
    return load_config(config_file)


def test_a_promoted_rollout_tells_when_by_what_and_how_far(config):
    write_decisions(config, *promoted())
    found = rollouts.rollout(config, 2)
    assert (found.version, found.champion, found.outcome, found.by) == (2, 1, "promoted",
                                                                        "checks")
    assert (found.started_at, found.ended_at) == (at(0), at(5, 1))
    assert found.reason == "passed every step: version 2 serves alone"
    assert found.failed_checks == []  # a failed interval on the way does not blame a promotion
    assert [i.number for i in found.intervals] == [1, 2, 3, 4, 5]
    assert [i.weight for i in found.intervals] == [10.0, 25.0, 25.0, 25.0, 50.0]
    assert [i.verdict for i in found.intervals] == ["pass", "hold", "fail", "pass", "pass"]
    assert found.intervals[2].failed_checks() == ["divergence"]
    assert (found.start_weight, found.weight) == (10.0, 50.0)
    assert found.short == "promoted 2026-03-02 12:05 (checks)"
    assert found.headline() == ("promoted 2026-03-02 12:05:01 UTC by checks after 5 "
                                "intervals, last weight 50 %")


def test_an_abort_by_the_checks_names_the_checks_of_its_last_interval(config):
    last = interval(2, 1, 4, at(4), 25.0, "fail",
                    [*diverging(), check("p99_ms", 410.0, 250.0, "fail")], "abort", 2, step=1)
    write_decisions(config, *aborted()[:-2], last, aborted()[-1])
    found = rollouts.rollout(config, 2)
    assert (found.outcome, found.by, found.champion) == ("aborted", "checks", 1)
    assert found.failed_checks == ["divergence", "p99_ms"]
    assert found.short == "aborted 2026-03-02 12:04 (divergence, p99_ms)"
    assert found.headline() == ("aborted 2026-03-02 12:04:01 UTC by checks on divergence, "
                                "p99_ms after 4 intervals, last weight 25 %")
    latency = found.intervals[-1].checks[-1]
    assert (latency.name, latency.value, latency.threshold, latency.failed) == (
        "p99_ms", 410.0, 250.0, True)


def test_an_end_by_hand_or_by_load_says_so(config):
    """`mlops abort` during a rollout, and a candidate that never loaded (no start, no
    interval: it got no traffic)."""
    write_decisions(config, *aborted(2)[:3],
                    end(2, 1, at(3), "aborted", "hand", "aborted by hand (`mlops abort`)"),
                    end(3, 1, at(9), "aborted", "load", "version 3 did not load"))
    by_hand, not_loaded = rollouts.rollouts(config)[2], rollouts.rollouts(config)[3]
    assert (by_hand.by, by_hand.failed_checks) == ("hand", ["divergence"])
    assert by_hand.short == "aborted 2026-03-02 12:03 (hand)"  # the hand decided, not a check
    assert (not_loaded.champion, not_loaded.intervals, not_loaded.weight) == (1, [], None)
    assert (not_loaded.started_at, not_loaded.start_weight) == ("", None)
    assert not_loaded.short == "aborted 2026-03-02 12:09 (load)"
    assert not_loaded.headline() == ("aborted 2026-03-02 12:09:00 UTC by load before it got "
                                     "any traffic")


def test_a_running_rollout_is_at_the_weight_its_last_step_set(config):
    """The interval that stepped 10 -> 25 % holds 10 %: the state has the weight now."""
    write_decisions(config, start(4, 3, at(0)),
                    interval(4, 3, 1, at(1), 10.0, "pass", passing(), "step"),
                    state=RolloutState("chicago-taxi", PROGRESSING, champion=3, candidate=4,
                                       step=1, weight=25.0, intervals=1, started_at=at(0)))
    found = rollouts.rollout(config, 4)
    assert (found.outcome, found.ended_at, found.by, found.weight) == ("in progress", "", "",
                                                                       25.0)
    assert found.short == "in progress 25 %"
    assert found.headline() == "in progress since 2026-03-02 12:00:00 UTC: 1 interval, now at 25 %"


def test_without_the_state_a_running_rollout_keeps_its_last_recorded_weight(config):
    files = write_decisions(config, start(4, 3, at(0), weight=5.0))
    files.state_file.write_text("not json")  # a damaged state: the records still answer
    found = rollouts.rollout(config, 4)
    assert (found.outcome, found.weight, found.intervals) == ("in progress", 5.0, [])


def test_the_newest_rollout_of_a_version_number_is_told(config):
    """A serving directory emptied and pushed to again: version 2 again, another model."""
    write_decisions(config, *aborted(2), *promoted(2, champion=1), *promoted(3, champion=2))
    found = rollouts.rollouts(config)
    assert sorted(found) == [2, 3]
    assert (found[2].outcome, len(found[2].intervals)) == ("promoted", 5)
    assert found[3].champion == 2  # the champion met, not the one after the promotion


def test_no_decisions_file_is_no_rollout_and_a_torn_line_is_skipped(config):
    assert rollouts.rollouts(config) == {} and rollouts.rollout(config, 1) is None
    files = write_decisions(config, *promoted()[:2])
    with open(files.decisions_file, "a") as out:
        out.write('{"time": "2026-03-02T12:02:00+00:00", "event": "interv')  # a crash
    found = rollouts.rollout(config, 2)
    assert [i.number for i in found.intervals] == [1] and found.outcome == "in progress"


def test_the_json_form_carries_every_interval_and_check(config):
    write_decisions(config, *promoted())
    document = json.loads(json.dumps(rollouts.rollout(config, 2).to_json()))
    assert {key: document[key] for key in ("version", "champion", "outcome", "by", "weight",
                                           "start_weight", "failed_checks")} == {
        "version": 2, "champion": 1, "outcome": "promoted", "by": "checks", "weight": 50.0,
        "start_weight": 10.0, "failed_checks": []}
    third = document["intervals"][2]
    assert (third["verdict"], third["next"], third["failed_intervals"]) == ("fail", "stay", 1)
    assert third["checks"][-1] == {"name": "divergence", "value": 0.2312, "threshold": 0.1,
                                   "verdict": "fail", "detail": "p=0.0004"}
    assert document["intervals"][0]["checks"][-1]["detail"] == ""  # a record without one
    assert [field.name for field in dataclasses.fields(rollouts.RolloutSummary)] == list(
        document)
