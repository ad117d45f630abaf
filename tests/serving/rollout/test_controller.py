"""The rollout loop over real files and a real repository of stand-in versions, on a
clock the test moves: pin, start, step, hold, promote, abort, resume after a restart,
pause, and the manual overrides. The windows are filled through the monitor as the data
plane fills them; the server-level loop is in test_rollout_server.py."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from serving import config_files, operations, server_files
from serving.repository import ModelRepository
from serving.rollout import records
from serving.rollout.controller import RolloutController
from serving.rollout.policy import RolloutPolicy
from serving.rollout.records import RolloutFiles
from serving.rollout.window import Monitor
from tests.conftest import mlops_in_process, write_config
from tests.serving.stand_ins import StandInServable

POLICY = RolloutPolicy(enabled=True, steps=(10, 50), interval_seconds=1, threshold=2,
                       min_requests=5)


def load(name: str, version: int, path: str) -> StandInServable:
    if (Path(path) / "broken").exists():
        raise ValueError("not a SavedModel")
    return StandInServable(name, version, path)


class Site:
    """A serving directory with a models.config, a repository applying it, and the loop."""

    def __init__(self, folder: Path, policy: RolloutPolicy = POLICY) -> None:
        self.folder = folder
        self.policy = policy
        self.base = folder / "m"
        self.push(1)
        self.models_config = folder / "models.config"
        self.settings = server_files.settings_for(self.models_config, "m")
        config_files.write_model_server_config(
            server_files.default_models_config(self.settings, str(self.base)),
            self.models_config)
        self.repository = ModelRepository(load)
        self.apply_files()
        self.now = 0.0
        self.files = RolloutFiles(folder, "m")
        self.restart()

    def restart(self) -> None:
        """A new controller (and monitor) over the same files, as after a server restart."""
        self.monitor = Monitor()
        self.loop = RolloutController(self.policy, str(self.models_config), self.monitor,
                                      self.repository, self.apply_files, clock=lambda: self.now)

    def apply_files(self) -> None:
        self.repository.apply_config(config_files.read_model_server_config(self.models_config))
        self.repository.poll()

    def push(self, version: int, broken: bool = False) -> None:
        (self.base / str(version)).mkdir(parents=True)
        if broken:
            (self.base / str(version) / "broken").touch()

    def interval(self, champion: int = 20, candidate: int = 20, failed: int = 0,
                 shift: float = 0.0) -> None:
        """Requests answered by each version over one interval, then the loop's tick."""
        state = self.files.read_state()
        for version, count in ((state.champion, champion), (state.candidate, candidate)):
            watch = self.monitor.watch("m", version)
            for i in range(count):
                if version == state.candidate and i < failed:
                    self.monitor.failed(watch, version, by_client=False)
                    continue
                value = (i % 10) / 10 + (shift if version == state.candidate else 0)
                self.monitor.answered(watch, version, 0.002,
                                      {"scores": np.array([[1 - value, value]])},
                                      key=f"{version}-{self.now}-{i}")
        self.now += POLICY.interval_seconds
        self.loop.tick()

    def loaded(self) -> set[int]:
        return set(self.repository.view("m").servables)

    def policy_versions(self) -> list[int]:
        config = config_files.read_model_server_config(self.models_config)
        return list(config.model_config_list.config[0].model_version_policy.specific.versions)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_a_push_is_stepped_up_held_on_no_data_promoted_and_the_next_one_aborted(site):
    site.loop.tick()
    assert site.policy_versions() == [1]  # pinned: a push waits for the loop
    site.push(2)
    site.loop.tick()
    assert operations.canary_state(site.settings) == operations.CanaryState(1, 2, 10.0)
    assert site.loaded() == {1, 2}
    assert site.files.read_state().state == records.PROGRESSING

    site.interval()
    assert operations.canary_state(site.settings).canary_weight == 50.0
    site.interval(champion=4)  # too few requests: nothing decided
    state = site.files.read_state()
    assert (state.state, state.step, state.weight) == (records.HOLDING, 1, 50.0)
    site.interval()
    assert operations.canary_state(site.settings) == operations.CanaryState(2, None, None)
    assert site.loaded() == {2} and site.policy_versions() == [2]
    state = site.files.read_state()
    assert (state.state, state.champion, state.candidate) == (records.PROMOTED, 2, None)

    site.push(3)
    site.loop.tick()
    assert operations.canary_state(site.settings) == operations.CanaryState(2, 3, 10.0)
    site.interval(failed=10)  # half failed: 1 of 2
    assert site.files.read_state().failed_intervals == 1
    site.restart()
    site.loop.tick()  # resumes measuring at the same step
    assert site.files.read_state().weight == 10.0
    site.interval(failed=10)
    assert operations.canary_state(site.settings) == operations.CanaryState(2, None, None)
    assert site.loaded() == {2}
    state = site.files.read_state()
    assert (state.state, state.decided) == (records.ABORTED, [2, 3])
    assert "error_rate" in state.reason
    site.loop.tick()  # an aborted version is not tried again
    assert site.files.read_state().candidate is None

    events = [(d["event"], d.get("next")) for d in site.files.decisions()]
    assert events == [("start", None), ("interval", "step"), ("interval", "hold"),
                      ("interval", "promote"), ("promoted", None),
                      ("start", None), ("interval", "stay"), ("interval", "abort"),
                      ("aborted", None)]
    abort = list(site.files.decisions(candidate=3))[-2]
    error_rate = next(c for c in abort["checks"] if c["name"] == "error_rate")
    assert (error_rate["value"], error_rate["threshold"], error_rate["verdict"]) == (
        0.5, POLICY.max_error_rate, "fail")


def test_divergent_outputs_abort_after_the_threshold(site):
    site.loop.tick()
    site.push(2)
    site.loop.tick()
    site.interval(shift=5.0)
    site.interval(shift=5.0)
    state = site.files.read_state()
    assert state.state == records.ABORTED and "divergence" in state.reason


def test_a_paused_rollout_decides_nothing_until_resumed(site):
    site.loop.tick()
    site.push(2)
    site.loop.tick()
    assert site.files.pause()
    site.interval(failed=20)
    site.interval(failed=20)
    state = site.files.read_state()
    assert (state.state, state.intervals, state.candidate) == (records.HOLDING, 0, 2)
    assert site.files.resume()
    site.interval()
    assert site.files.read_state().weight == 50.0


def test_mlops_promote_during_a_rollout_ends_it_as_promoted_by_hand(site):
    site.loop.tick()
    site.push(2)
    site.loop.tick()
    operations.promote(site.settings)
    site.loop.tick()
    state = site.files.read_state()
    assert (state.state, state.champion) == (records.PROMOTED, 2)
    assert list(site.files.decisions())[-1]["by"] == "hand"


def test_a_version_that_does_not_load_is_aborted_and_the_champion_keeps_serving(site):
    site.loop.tick()
    site.push(2, broken=True)
    site.loop.tick()
    state = site.files.read_state()
    assert (state.state, state.decided, state.champion) == (records.ABORTED, [2], 1)
    assert site.loaded() == {1} and site.policy_versions() == [1]
    assert list(site.files.decisions())[-1]["by"] == "load"


def test_mlops_rollout_status_pause_and_resume(site):
    """The commands read and mark the files a running loop uses; no server needed."""
    config = write_config(site.folder, {"serving.model_name": "m",
                                        "serving.base_directory": str(site.folder),
                                        "serving.rollout.enabled": True})
    site.loop.tick()
    site.push(2)
    site.loop.tick()
    site.interval(failed=10)

    result = mlops_in_process("rollout", "status", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert {key: status[key] for key in ("state", "champion", "candidate", "weight",
                                         "failed_intervals", "paused")} == {
        "state": "progressing", "champion": 1, "candidate": 2, "weight": 10.0,
        "failed_intervals": 1, "paused": False}
    (interval,) = [d for d in status["decisions"] if d["event"] == "interval"]
    assert {c["name"]: c["verdict"] for c in interval["checks"]}["error_rate"] == "fail"

    result = mlops_in_process("rollout", "pause", "--config", str(config))
    assert result.returncode == 0 and "m: rollout paused" in result.stdout, result.stderr
    assert site.files.paused
    result = mlops_in_process("rollout", "status", "--config", str(config))
    text = " ".join(result.stdout.split())
    assert "m: progressing (paused" in text
    assert "champion 1, candidate 2 at 10 % (step 1), 1 failed of 3" in text
    assert "#1 at 10 %, requests 20/20: fail -> stay" in text
    assert "error_rate 0.5 (max 0.01) FAIL" in text  # the value, threshold, verdict
    result = mlops_in_process("rollout", "resume", "--config", str(config))
    assert result.returncode == 0 and "m: rollout resumed" in result.stdout
    assert not site.files.paused


def test_a_state_file_that_is_not_one_is_one_error_line(site):
    config = write_config(site.folder, {"serving.model_name": "m",
                                        "serving.base_directory": str(site.folder)})
    site.files.folder.mkdir(parents=True)
    site.files.state_file.write_text("[1, 2]")
    result = mlops_in_process("rollout", "status", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {site.files.state_file}: not a rollout state")


def test_with_online_quality_on_the_last_step_waits_for_labels_then_judges_them(tmp_path):
    site = Site(tmp_path, dataclasses.replace(POLICY, min_labelled=15, max_accuracy_drop=0.01))
    site.loop.tick()
    site.push(2)
    site.loop.tick()
    site.interval()  # 10 % -> 50 %
    site.interval()  # passed the last step, but no label yet
    state = site.files.read_state()
    assert (state.state, state.weight) == (records.HOLDING, 50.0)
    assert "labelled answers" in state.reason
    # every answer's predicted class is 1 when its score is >= 0.5; the truth says 0 for
    # all the candidate's, 1 for the champion's that predicted 1
    for version, truth in ((1, lambda value: "1" if value >= 0.5 else "0"),
                           (2, lambda value: "0")):
        for answered_at in (0.0, 1.0):  # the two intervals' answers
            for i in range(20):
                site.monitor.label("m", f"{version}-{answered_at}-{i}", truth((i % 10) / 10))
    site.interval()
    site.interval()
    state = site.files.read_state()
    assert state.state == records.ABORTED and "accuracy_drop" in state.reason


def test_a_check_recorded_outside_the_server_counts_in_the_next_interval(site):
    """`mlops skew --rollout` writes its verdict for the candidate; the loop counts it.
    A verdict for another candidate, or a file that is not one, is ignored."""
    site.loop.tick()
    site.push(2)
    site.loop.tick()
    site.files.write_external_check(1, {"name": "skew", "value": 5.0, "threshold": 0.0,
                                        "verdict": "fail", "detail": "not this candidate"})
    site.files.checks_folder.joinpath("broken.json").write_text(
        f'{{"candidate": 2, "time": "{records.now_iso()}", "check": "fail"}}')
    site.files.checks_folder.joinpath("odd.json").write_text(
        f'{{"candidate": 2, "time": "{records.now_iso()}", "check": {{"name": "x"}}}}')
    site.interval()
    assert site.files.read_state().weight == 50.0  # passed: neither counted
    site.files.write_external_check(2, {"name": "skew", "value": 2.0, "threshold": 0.0,
                                        "verdict": "fail", "detail": "skew: fare 0.3"})
    site.interval()
    site.interval()
    state = site.files.read_state()
    assert state.state == records.ABORTED and "skew" in state.reason
    last = [d for d in site.files.decisions(candidate=2) if d["event"] == "interval"][-1]
    assert {"name": "skew", "value": 2.0, "threshold": 0.0, "verdict": "fail",
            "detail": "skew: fare 0.3"} in last["checks"]
