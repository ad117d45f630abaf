"""The rollout loop: start a candidate when a version is pushed, judge it every interval,
step it up, promote or abort it.

It runs on the embedded server's poller thread (`ModelServer`), between polls, so its edits
of the models.config and the split are applied at once (`apply_files`: re-read both, poll)
and never race the poller; a load and warm-up of the candidate happens there too, as
every load does. The edits are `serving.operations`' (the same as `mlops canary`,
`promote`, `abort`), so what the rollout leaves is what a person would have left, and
`mlops promote` / `abort` stay the manual overrides: the loop sees the labels change and
records the rollout as ended by hand.

In shadow mode the split stays at 0 (the champion answers every request) and the step's
share is the monitor's mirror share instead: the data plane also sends those requests to
the candidate and measures its answers.

The policy pins the served version (`specific`) while a rollout waits, so a push is
loaded only when the loop starts it as a candidate. Before anything was served there is
nothing to compare with, so the first version goes live as pushed and becomes the
champion.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional

from serving import config_files, operations, server_files, traffic
from serving.labels import LabelFolder
from serving.repository import ModelRepository, State, version_directories
from serving.rollout import checks, records
from serving.rollout.policy import SHADOW, RolloutPolicy
from serving.rollout.records import RolloutFiles, RolloutState
from serving.rollout.window import Monitor

log = logging.getLogger("serving.rollout")

_LOAD_ATTEMPTS = 3  # polls given to a candidate's load before the rollout gives it up


class ModelRollout:
    """One model's rollout: its files, state, and the interval under way."""

    def __init__(self, controller: "RolloutController", model_name: str) -> None:
        self.controller = controller
        self.name = model_name
        self.settings = server_files.settings_for(controller.models_config_file, model_name)
        self.files = RolloutFiles(self.settings.serving.base_directory, model_name)
        self.state: RolloutState = self.files.read_state()
        self.interval_ends: Optional[float] = None

    # --- what the files say -------------------------------------------------------------------

    def _served_now(self) -> Optional[int]:
        """The version answering the bare URL now (stable label, else the newest loaded)."""
        view = self.controller.repository.view(self.name)
        if view is None or not view.servables:
            return None
        return view.labels.get(traffic.STABLE_LABEL, max(view.servables))

    def _save(self, state: str, reason: str) -> None:
        self.state.state, self.state.reason = state, reason
        self.files.write_state(self.state)

    # --- the loop -------------------------------------------------------------------------------

    def resume(self) -> None:
        """At start-up: measure a rollout the files say is running, from a new interval."""
        if self.state.running:
            log.info("%s: resuming the rollout of version %d at %g %%", self.name,
                     self.state.candidate, self.state.weight)
            self._begin_interval()
            self.controller.monitor.begin(self.name, self.state.champion, self.state.candidate,
                                          self.controller.policy.mirror_share(self.state.step),
                                          self.controller.policy.interval_seconds)

    def tick(self, base_path: str) -> None:
        """Does what is due: pin, start a candidate, or judge the interval that ended
        (`base_path`: the model's, from the models.config the controller parsed)."""
        if self.state.running:
            if not self._ended_by_hand():
                self._judge_if_due()
            return
        if self.files.paused:
            return
        canary = operations.canary_state(self.settings)
        if canary.canary is not None:
            return  # a canary started by hand: `mlops promote` / `abort` ends it
        served = self._served_now()
        if served is None:
            return  # nothing served yet: the first push goes live as it is
        if self.state.champion != served:
            self._pin(served)
            return
        newest = max(version_directories(base_path), default=None)
        if newest is not None and newest > served and newest not in self.state.decided:
            self._start(newest)

    def _pin(self, champion: int) -> None:
        """Serves `champion` alone, so that pushes wait for the loop."""
        operations.serve_alone(self.settings, champion)
        self.controller.apply_files()
        self.state.champion = champion
        self._save(self.state.state, f"version {champion} serves alone; new pushes start "
                                     "as candidates")
        log.info("%s: version %d is the champion", self.name, champion)

    def _start(self, candidate: int) -> None:
        policy, champion = self.controller.policy, self.state.champion
        weight = policy.weight_at(0)
        try:
            operations.start_canary(self.settings, candidate, weight=policy.split_weight(0),
                                    stable=champion, wait_until_served=self._wait_loaded)
        except operations.OperationError as err:
            operations.serve_alone(self.settings, champion)
            self.controller.apply_files()
            self._end(candidate, records.ABORTED, "load", str(err))
            return
        self.state = RolloutState(self.name, champion=champion, candidate=candidate,
                                  weight=weight, started_at=records.now_iso(),
                                  decided=self.state.decided)
        self.controller.monitor.begin(self.name, champion, candidate, policy.mirror_share(0),
                                      policy.interval_seconds)
        self.controller.apply_files()
        self._begin_interval()
        self._save(records.PROGRESSING, self._share(candidate, weight))
        self.files.append_decision({"event": "start", "champion": champion,
                                    "candidate": candidate, "step": 0, "weight": weight,
                                    "mode": policy.mode})
        log.info("%s: version %d is the candidate at %g %% (champion %d)", self.name,
                 candidate, weight, champion)

    def _share(self, candidate: int, weight: float) -> str:
        if self.controller.policy.mode == SHADOW:
            return (f"version {candidate} shadows {weight:g} % of the requests (the champion "
                    "answers them all)")
        return f"version {candidate} gets {weight:g} %"

    def _begin_interval(self) -> None:
        self.interval_ends = self.controller.clock() + self.controller.policy.interval_seconds

    def _judge_if_due(self) -> None:
        if self.interval_ends is None or self.controller.clock() < self.interval_ends:
            return
        self._begin_interval()
        windows = self.controller.monitor.take(self.name)
        if windows is None:
            return
        if self.files.paused:
            self._save(records.HOLDING, "paused (`mlops rollout resume` goes on)")
            return
        outside = tuple(filter(None, map(checks.Check.from_json, self.files.external_checks(
            self.state.candidate, self.state.started_at))))
        interval = checks.judge(*windows, self.controller.policy,
                                self.controller.monitor.quality(self.name), outside)
        self.state.intervals += 1
        next_move = self._next_move(interval)
        self.files.append_decision({
            "event": "interval", "champion": self.state.champion,
            "candidate": self.state.candidate, "interval": self.state.intervals,
            "step": self.state.step, "weight": self.state.weight, "verdict": interval.verdict,
            "checks": [check.to_json() for check in interval.checks],
            "champion_requests": interval.champion_requests,
            "candidate_requests": interval.candidate_requests,
            "failed_intervals": self.state.failed_intervals, "next": next_move})
        self._act(next_move, interval)

    def _next_move(self, interval: checks.Interval) -> str:
        policy = self.controller.policy
        if interval.verdict == checks.HOLD:
            return "hold"
        if interval.verdict == checks.FAIL:
            self.state.failed_intervals += 1
            return "abort" if self.state.failed_intervals >= policy.threshold else "stay"
        if self.state.step + 1 < len(policy.steps):
            return "step"
        quality = next(check for check in interval.checks if check.name == "accuracy_drop")
        if policy.min_labelled and quality.verdict == checks.SKIP:
            return "wait_for_labels"  # never promote on quality not yet measured
        return "promote"

    def _act(self, move: str, interval: checks.Interval) -> None:
        candidate = self.state.candidate
        if move == "hold":
            self._save(records.HOLDING, "too few requests in the last interval (min_requests "
                                        f"{self.controller.policy.min_requests} per version)")
        elif move == "wait_for_labels":
            self._save(records.HOLDING, "passed at the last step; promotes once each version "
                                        f"has {self.controller.policy.min_labelled} labelled "
                                        "answers")
        elif move == "stay":
            self._save(records.PROGRESSING, f"failed {', '.join(interval.failed_checks())} "
                                            f"({self.state.failed_intervals} of "
                                            f"{self.controller.policy.threshold})")
        elif move == "step":
            policy = self.controller.policy
            self.state.step += 1
            self.state.weight = policy.weight_at(self.state.step)
            if policy.mode == SHADOW:
                self.controller.monitor.set_mirror(self.name, self.state.weight)
            else:
                operations.set_canary_weight(self.settings, self.state.weight)
                self.controller.apply_files()
            self._save(records.PROGRESSING, self._share(candidate, self.state.weight))
        elif move == "promote":
            operations.promote(self.settings, wait_until_unloaded=self._wait_unloaded)
            self.controller.apply_files()
            self._end(candidate, records.PROMOTED, "checks",
                      f"passed every step: version {candidate} serves alone")
        else:
            operations.abort(self.settings, wait_until_unloaded=self._wait_unloaded)
            self.controller.apply_files()
            self._end(candidate, records.ABORTED, "checks",
                      f"failed {', '.join(interval.failed_checks())} in "
                      f"{self.state.failed_intervals} intervals")

    def _ended_by_hand(self) -> bool:
        """True when `mlops promote` / `abort` (or an edit) ended the rollout meanwhile."""
        canary = operations.canary_state(self.settings)
        if canary.canary == self.state.candidate:
            return False
        candidate = self.state.candidate
        promoted = canary.stable == candidate
        self._end(candidate, records.PROMOTED if promoted else records.ABORTED, "hand",
                  f"{'promoted' if promoted else 'aborted'} by hand "
                  f"(`mlops {'promote' if promoted else 'abort'}`)")
        return True

    def _end(self, candidate: int, outcome: str, by: str, reason: str) -> None:
        self.controller.monitor.end(self.name)
        self.interval_ends = None
        if outcome == records.PROMOTED:
            self.state.champion = candidate
        self.state.candidate = None
        self.state.decided = sorted(set(self.state.decided) | {candidate})
        self._save(outcome, reason)
        self.files.append_decision({"event": outcome, "champion": self.state.champion,
                                    "candidate": candidate, "by": by, "reason": reason})
        log.info("%s: version %d %s: %s", self.name, candidate, outcome, reason)

    # --- waiting for the repository (on this thread, so by applying the files) -------------------

    def _wait_loaded(self, version: int) -> bool:
        for _ in range(_LOAD_ATTEMPTS):
            self.controller.apply_files()
            if self._state_of(version) == State.AVAILABLE:
                return True
        return False

    def _wait_unloaded(self, version: int) -> bool:
        self.controller.apply_files()
        return self._state_of(version) != State.AVAILABLE

    def _state_of(self, version: int) -> Optional[State]:
        view = self.controller.repository.view(self.name)
        for status in view.statuses if view else ():
            if status.version == version:
                return status.state
        return None


class RolloutController:
    """Every configured model's rollout, advanced by `tick` on the poller thread.

    Args:
        policy: the steps, interval and thresholds (the server's `--rollout_*` flags).
        models_config_file: the serving directory's models.config, which the loop edits.
        monitor: the windows the data plane fills.
        repository: the server's; read for what is loaded.
        apply_files: re-reads the models.config and the split and polls (the server's).
        labels: the labels folders to read dropped CSV files from (None: no request log).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, policy: RolloutPolicy, models_config_file: str, monitor: Monitor,
                 repository: ModelRepository, apply_files: Callable[[], None],
                 labels: Optional[LabelFolder] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.models_config_file = models_config_file
        self.monitor = monitor
        self.repository = repository
        self.apply_files = apply_files
        self.labels = labels
        self.clock = clock
        self._models: dict[str, ModelRollout] = {}
        self._parsed: Optional[tuple[tuple[int, int], object]] = None  # (file mark, config)

    def tick(self) -> None:
        """Starts, judges and ends what is due; a failing model is logged, not fatal."""
        for model in self._models_config().model_config_list.config:
            rollout = self._models.get(model.name)
            if rollout is None:
                rollout = self._models[model.name] = ModelRollout(self, model.name)
                rollout.resume()
            try:
                self._read_dropped_labels(model.name)
                rollout.tick(model.base_path)
            except Exception:  # keep serving: the next tick tries again
                log.exception("the rollout of %s failed this tick", model.name)

    def _models_config(self):
        """The models.config, parsed again only when the file changed (the loop ticks
        several times a second, holding the GIL the request path needs)."""
        stat = os.stat(self.models_config_file)
        mark = (stat.st_mtime_ns, stat.st_size)
        if self._parsed is None or self._parsed[0] != mark:
            self._parsed = (mark, config_files.read_model_server_config(
                self.models_config_file))
        return self._parsed[1]

    def _read_dropped_labels(self, model_name: str) -> None:
        """Joins the labels of CSV files dropped into the model's labels folder."""
        if self.labels is None:
            return
        for path, pairs in self.labels.new_files(model_name):
            joined = sum(self.monitor.label(model_name, key, label) for key, label in pairs)
            log.info("%s: %d labels read from %s (%d joined to the rollout)", model_name,
                     len(pairs), path, joined)

    def stop(self) -> None:
        """Stops measuring (the files keep where each rollout stands)."""
        for name in self._models:
            self.monitor.end(name)
