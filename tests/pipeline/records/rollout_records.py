"""Made-up rollout decisions, written where the embedded server writes them
(`<serving.base_directory>/rollouts/<model>/decisions.jsonl`) and shaped as
`serving/rollout/controller.py` shapes them, for the tests of what the pipeline reads back
(`records.rollouts`, lineage, history, the report) without running a server.

Times are given, not stamped, so the texts built from them can be asserted whole.
"""
from __future__ import annotations

import json
from typing import Optional

from pipeline.definition.config import PipelineConfig
from serving.rollout.records import RolloutFiles, RolloutState

MODEL = "chicago-taxi"


def at(minute: int, second: int = 0) -> str:
    """A record's time: 2026-03-02 12:MM:SS UTC, as `records.now_iso` writes it."""
    return f"2026-03-02T12:{minute:02d}:{second:02d}+00:00"


def check(name: str, value: Optional[float], threshold: Optional[float],
          verdict: str, detail: str = "") -> dict:
    return {"name": name, "value": value, "threshold": threshold, "verdict": verdict,
            **({"detail": detail} if detail else {})}


def passing(divergence: float = 0.02) -> list[dict]:
    """The checks of an interval that passes (the default policy's four, p99_ms off)."""
    return [check("error_rate", 0.0, 0.01, "pass"),
            check("p99_vs_champion_ms", 8.4, 19.5, "pass"),
            check("divergence", divergence, 0.1, "pass")]


def diverging(divergence: float = 0.2312) -> list[dict]:
    """The checks of an interval whose outputs moved too far from the champion's."""
    return [check("error_rate", 0.0, 0.01, "pass"),
            check("p99_vs_champion_ms", 8.0, 19.5, "pass"),
            check("divergence", divergence, 0.1, "fail", "p=0.0004")]


def too_few() -> list[dict]:
    """The checks of a held interval: latency and outputs not measured."""
    return [check("error_rate", 0.0, 0.01, "pass"),
            check("p99_vs_champion_ms", None, None, "skip"),
            check("divergence", None, 0.1, "skip")]


def start(candidate: int, champion: int, time: str, weight: float = 10.0) -> dict:
    return {"time": time, "model": MODEL, "event": "start", "champion": champion,
            "candidate": candidate, "step": 0, "weight": weight}


def interval(candidate: int, champion: int, number: int, time: str, weight: float,
             verdict: str, checks: list[dict], next_move: str, failed: int = 0,
             step: int = 0, requests: tuple[int, int] = (540, 61)) -> dict:
    return {"time": time, "model": MODEL, "event": "interval", "champion": champion,
            "candidate": candidate, "interval": number, "step": step, "weight": weight,
            "verdict": verdict, "checks": checks, "champion_requests": requests[0],
            "candidate_requests": requests[1], "failed_intervals": failed, "next": next_move}


def end(candidate: int, champion: int, time: str, event: str, by: str, reason: str) -> dict:
    """A promoted or aborted record; `champion` is the one after it (the candidate, once
    promoted), as the controller writes it."""
    return {"time": time, "model": MODEL, "event": event, "champion": champion,
            "candidate": candidate, "by": by, "reason": reason}


def promoted(candidate: int = 2, champion: int = 1) -> list[dict]:
    """A rollout through 10, 25 and 50 % with a held and a failed interval on the way,
    promoted by the checks at 12:05."""
    c, p = candidate, champion
    return [start(c, p, at(0)),
            interval(c, p, 1, at(1), 10.0, "pass", passing(), "step"),
            interval(c, p, 2, at(2), 25.0, "hold", too_few(), "hold", step=1,
                     requests=(210, 12)),
            interval(c, p, 3, at(3), 25.0, "fail", diverging(), "stay", 1, step=1),
            interval(c, p, 4, at(4), 25.0, "pass", passing(0.05), "step", 1, step=1),
            interval(c, p, 5, at(5), 50.0, "pass", passing(0.03), "promote", 1, step=2),
            end(c, c, at(5, 1), "promoted", "checks",
                f"passed every step: version {c} serves alone")]


def aborted(candidate: int = 2, champion: int = 1) -> list[dict]:
    """A rollout aborted by the checks at 12:04, on divergence, in its second failed
    interval at 25 %."""
    c, p = candidate, champion
    return [start(c, p, at(0)),
            interval(c, p, 1, at(1), 10.0, "pass", passing(), "step"),
            interval(c, p, 2, at(2), 25.0, "fail", diverging(), "stay", 1, step=1),
            interval(c, p, 3, at(3), 25.0, "pass", passing(), "stay", 1, step=1),
            interval(c, p, 4, at(4), 25.0, "fail", diverging(0.31), "abort", 2, step=1),
            end(c, p, at(4, 1), "aborted", "checks", "failed divergence in 2 intervals")]


def write_decisions(config: PipelineConfig, *records: dict,
                    state: Optional[RolloutState] = None) -> RolloutFiles:
    """The records as the decisions file's lines (and the saved state, when given)."""
    files = RolloutFiles(config.serving.base_directory, config.serving.model_name)
    files.folder.mkdir(parents=True, exist_ok=True)
    with open(files.decisions_file, "a", encoding="utf-8") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)
    if state is not None:
        files.write_state(state)
    return files
