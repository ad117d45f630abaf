"""The pipeline's story, run once and read by several modules.

One workspace lives as a scheduled pipeline's does: span 1 arrives and is pushed as
version 1; a run held to an unmeetable threshold is refused; span 2 arrives twice broken
(a missing column, text in a number column) and is stopped before training; span 2
arrives whole and is pushed as version 2 after a comparison with version 1; an unchanged
re-run pushes nothing. Then the loop back from serving: the embedded server serves what
was pushed and logs the requests it answers with their keys, labels known later are
posted to it and join them (`mlops span-from-requests`) as span 3, and the next run trains
on it; its push is rolled out by the server's live checks (`serving.rollout`), `mlops
skew --rollout` adding its verdict, and promoted.

`test_steps.py` checks each step, `test_history.py` what `mlops history` and `mlops
lineage` say of them, `test_report.py` the HTML report of the second push. The modules of
this folder share one pytest-xdist worker (tests/conftest.py `SHARED_WORKER_FOLDERS`), so
the story runs once per session.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.definition.config import PipelineConfig, load_config
from pipeline.records.summary import RunReport
from tests.conftest import (FAST_TRAINING, LENIENT, ROWS, TAXI_DATA, copy_taxi_span,
                            mlops_in_process, write_config)

SLICED = {"evaluation.slices": ["payment_type"]}  # the report shows metrics by slice
LOGGED = {"serving.request_log.sample_rate": 1.0}  # the server logs every request
ROLLED_OUT = {"serving.rollout.enabled": True, "serving.rollout.steps": [50],
              "serving.rollout.interval_seconds": 2, "serving.rollout.min_requests": 20}
UNMEETABLE = {"evaluation.thresholds": [
    {"metric": "BinaryAccuracy", "lower_bound": 1.0, "max_regression": None}]}
STEPS = ("first_push", "refused", "missing_column", "wrong_type", "second_push", "unchanged",
         "from_requests")
REQUESTS_SENT = 400  # trips of the bundled span 3, sent with their keys


@dataclasses.dataclass(frozen=True)
class RequestLoop:
    """What the loop back from serving did before the story's last run."""

    sent: int  # requests answered (rows with a missing integer cannot go to :predict)
    labels: dict[str, str]  # request key -> label (as the server keeps it), three trips in four
    posted: dict  # what POST /v1/models/<name>/labels answered
    span_from_requests: subprocess.CompletedProcess  # `mlops span-from-requests`'s outcome
    span_file: Path


@dataclasses.dataclass(frozen=True)
class Rollout:
    """How the last run's push was rolled out by the server."""

    version: int
    skew: subprocess.CompletedProcess  # `mlops skew --rollout` while it ran
    served: list[int]  # the versions the server had loaded when the rollout ended
    answered_by: dict[str, int]  # X-Model-Version -> requests answered during it


@dataclasses.dataclass(frozen=True)
class Story:
    folder: Path
    config_file: Path
    config: PipelineConfig
    runs: dict[str, RunReport]  # by step, in STEPS order
    served_after: dict[str, list[int]]  # the versions on disk after each step
    requests: RequestLoop
    rollout: Rollout

    def run_ids_newest_first(self) -> list[str]:
        return [self.runs[step].run_id for step in reversed(STEPS)]


def _text_in_numbers(records):
    for index, record in enumerate(records):
        if index % 10 == 0:
            record["trip_miles"] = "far"
        yield record


def _server(config: PipelineConfig):
    """The embedded server as `mlops serve --embedded` runs it from the config (its
    command line parsed back), on free ports."""
    from serving import flags, server_files
    from tests.serving.conftest import RunningServer

    settings = config.serving_settings()
    argv = server_files.server_command(settings, server_files.write_server_files(settings),
                                       "python")
    options, _ = flags.parse(argv[3:])
    return RunningServer(**{**dataclasses.asdict(options), "port": 0, "rest_api_port": 0})


def _trips() -> Iterator[tuple[str, dict, str]]:
    """(request key, the row as :predict takes it, its tips) of span 3's trips that can be
    sent (a missing integer cannot)."""
    from tests.serving.conftest import INTS, csv_row

    source = TAXI_DATA / "span-3" / "trips.csv"
    with open(source, newline="") as handle:
        tips = [row["tips"] for row in csv.DictReader(handle)]
    for number in range(1, REQUESTS_SENT + 1):
        row = csv_row(source, number)
        if all(name in row for name in INTS):
            yield f"trip-{number}", row, tips[number - 1]


def _serve_and_label(config: PipelineConfig, config_file: Path) -> RequestLoop:
    """Serves the pushed versions with the request log on, sends keyed trips, posts the
    labels of three in four to the server, and writes them as span 3 with `mlops
    span-from-requests` from the server's labels folder."""
    import httpx

    from serving.labels import LabelFolder, normalise_label

    server = _server(config)
    sent, labels = 0, {}
    # One client, as a caller of the model keeps one (and as `_roll_out` does): a new one
    # per request (`httpx.post`) builds an SSL context each time, about 30 ms of CPU in
    # this process, which the in-process server shares: most of this step's time.
    try:
        url = f"{server.rest_url}/v1/models/{config.serving.model_name}"
        with httpx.Client(timeout=30) as client:
            for number, (key, row, tips) in enumerate(_trips(), start=1):
                answer = client.post(f"{url}:predict", json={"instances": [row]},
                                     headers={"X-Request-Key": key})
                assert answer.status_code == 200, answer.text
                sent += 1
                if number % 4:  # the outcome of every fourth trip is not known yet
                    labels[key] = normalise_label(tips)
            body = "\n".join(json.dumps({"key": key, "label": label})
                             for key, label in labels.items())
            posted = client.post(f"{url}/labels", content=body.encode())
        assert posted.status_code == 200, posted.text
    finally:
        server.stop()  # a clean stop writes every logged request
    folder = LabelFolder(config.serving.request_log_dir).folder(config.serving.model_name)
    made = mlops_in_process("span-from-requests", "--labels", str(folder), "--config",
                            str(config_file))
    return RequestLoop(sent, labels, posted.json(), made,
                       Path(config.data.input_base) / "span-3" / "requests.csv")


def _roll_out(config: PipelineConfig, config_file: Path, version: int) -> Rollout:
    """Serves again, with keyed traffic, until the server's rollout of `version` ends;
    `mlops skew --rollout` judges the candidate's training data meanwhile, the rollout
    paused for it."""
    import httpx

    from serving.rollout.records import RolloutFiles
    from tests.serving.conftest import wait_for

    files = RolloutFiles(config.serving.base_directory, config.serving.model_name)
    server = _server(config)
    stop, answered_by = threading.Event(), {}

    def send() -> None:
        url = f"{server.rest_url}/v1/models/{config.serving.model_name}:predict"
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                for key, row, _ in _trips():
                    answer = client.post(url, json={"instances": [row]},
                                         headers={"X-Request-Key": key})
                    assert answer.status_code == 200, answer.text
                    served = answer.headers["X-Model-Version"]
                    answered_by[served] = answered_by.get(served, 0) + 1
                    if stop.is_set():
                        return

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        wait_for(lambda: files.read_state().candidate == version, "the rollout's start")
        # held while the skew is judged (seconds of TFDV), so that the verdict is counted
        # before the rollout can end: an operator's `pause`, check, `resume`
        paused = mlops_in_process("rollout", "pause", "--config", str(config_file))
        assert paused.returncode == 0, paused.stderr
        skew = mlops_in_process("skew", "--rollout", "--config", str(config_file))
        mlops_in_process("rollout", "resume", "--config", str(config_file))
        wait_for(lambda: version in files.read_state().decided, "the rollout's end",
                 timeout=180)
        served = sorted(server.server.repository.view(config.serving.model_name).servables)
    finally:
        stop.set()
        sender.join(30)
        server.stop()
    return Rollout(version, skew, served, answered_by)


@pytest.fixture(scope="session")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    from components import versioned_pusher
    from pipeline.cli.run import write_run_page
    from pipeline.local.run import run_pipeline

    folder = tmp_path_factory.mktemp("story")
    data = folder / "data"
    data.mkdir()
    settings = {**FAST_TRAINING, **LENIENT, **SLICED, **LOGGED, **ROLLED_OUT}
    runs: dict[str, RunReport] = {}
    served_after: dict[str, list[int]] = {}

    def run(step: str, **changes) -> None:
        config = load_config(write_config(folder, {**settings, **changes}))
        runs[step] = run_pipeline(config)
        write_run_page(config, runs[step])  # what `mlops run` does after its summary
        served_after[step] = versioned_pusher.existing_versions(config.serving_model_dir)

    copy_taxi_span(1, data, rows=ROWS)
    run("first_push")
    run("refused", **UNMEETABLE)
    copy_taxi_span(2, data, rows=ROWS, drop_columns=["fare"])
    run("missing_column")
    copy_taxi_span(2, data, rows=ROWS, edit=_text_in_numbers)
    run("wrong_type")
    copy_taxi_span(2, data, rows=ROWS)
    run("second_push")
    run("unchanged")
    config_file = write_config(folder, settings)
    config = load_config(config_file)
    requests = _serve_and_label(config, config_file)
    run("from_requests")
    rollout = _roll_out(config, config_file, int(runs["from_requests"].pushed_version))
    return Story(folder, config_file, config, runs, served_after, requests, rollout)
