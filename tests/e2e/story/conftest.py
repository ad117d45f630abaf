"""The pipeline's story, run once and read by several modules.

One workspace lives as a scheduled pipeline's does: span 1 arrives and is pushed as
version 1; a run held to an unmeetable threshold is refused; span 2 arrives twice broken
(a missing column, text in a number column) and is stopped before training; span 2
arrives whole and is pushed as version 2 after a comparison with version 1; an unchanged
re-run pushes nothing. Then the loop back from serving: the embedded server serves what
was pushed and logs the requests it answers with their keys, labels known later join
them (`mlops span-from-requests`) as span 3, and the next run trains on it.

`test_steps.py` checks each step, `test_history.py` what `mlops history` and `mlops
lineage` say of them, `test_report.py` the HTML report of the second push. The modules of
this folder share one pytest-xdist worker (tests/conftest.py `SHARED_WORKER_FOLDERS`), so
the story runs once per session.
"""
from __future__ import annotations

import csv
import dataclasses
import subprocess
from pathlib import Path

import pytest

from pipeline.definition.config import PipelineConfig, load_config
from pipeline.records.summary import RunReport
from tests.conftest import (FAST_TRAINING, LENIENT, ROWS, TAXI_DATA, copy_taxi_span,
                            mlops_in_process, write_config)

SLICED = {"evaluation.slices": ["payment_type"]}  # the report shows metrics by slice
LOGGED = {"serving.request_log.sample_rate": 1.0}  # the server logs every request
UNMEETABLE = {"evaluation.thresholds": [
    {"metric": "BinaryAccuracy", "lower_bound": 1.0, "max_regression": None}]}
STEPS = ("first_push", "refused", "missing_column", "wrong_type", "second_push", "unchanged",
         "from_requests")
REQUESTS_SENT = 400  # trips of the bundled span 3, sent with their keys


@dataclasses.dataclass(frozen=True)
class RequestLoop:
    """What the loop back from serving did before the story's last run."""

    sent: int  # requests answered (rows with a missing integer cannot go to :predict)
    labels: dict[str, str]  # request key -> label, for three trips in four
    span_from_requests: subprocess.CompletedProcess  # `mlops span-from-requests`'s outcome
    span_file: Path


@dataclasses.dataclass(frozen=True)
class Story:
    folder: Path
    config_file: Path
    config: PipelineConfig
    runs: dict[str, RunReport]  # by step, in STEPS order
    served_after: dict[str, list[int]]  # the versions on disk after each step
    requests: RequestLoop

    def run_ids_newest_first(self) -> list[str]:
        return [self.runs[step].run_id for step in reversed(STEPS)]


def _text_in_numbers(records):
    for index, record in enumerate(records):
        if index % 10 == 0:
            record["trip_miles"] = "far"
        yield record


def _serve_and_label(config: PipelineConfig, config_file: Path, folder: Path) -> RequestLoop:
    """Serves the pushed versions with the request log on, sends keyed trips, and writes
    the labels of three in four as span 3 with `mlops span-from-requests`."""
    import httpx

    from tests.serving.conftest import INTS, RunningServer, csv_row

    server = RunningServer(model_name=config.serving.model_name,
                           model_base_path=config.serving_model_dir,
                           request_log_sample_rate=1.0,
                           request_log_dir=config.serving.request_log_dir)
    source = TAXI_DATA / "span-3" / "trips.csv"
    with open(source, newline="") as handle:
        tips = [row["tips"] for row in csv.DictReader(handle)]
    sent, labels = 0, {}
    try:
        url = f"{server.rest_url}/v1/models/{config.serving.model_name}:predict"
        for number in range(1, REQUESTS_SENT + 1):
            row = csv_row(source, number)
            if any(name not in row for name in INTS):
                continue  # a missing integer cannot be sent to :predict
            key = f"trip-{number}"
            answer = httpx.post(url, json={"instances": [row]},
                                headers={"X-Request-Key": key}, timeout=30)
            assert answer.status_code == 200, answer.text
            sent += 1
            if number % 4:  # the outcome of every fourth trip is not known yet
                labels[key] = tips[number - 1]
    finally:
        server.stop()  # a clean stop writes every logged request
    labels_file = folder / "outcomes.csv"
    with open(labels_file, "w", newline="") as handle:
        csv.writer(handle).writerows([("request_key", "tips"), *labels.items()])
    made = mlops_in_process("span-from-requests", "--labels", str(labels_file), "--config",
                            str(config_file))
    return RequestLoop(sent, labels, made, folder / "data" / "span-3" / "requests.csv")


@pytest.fixture(scope="session")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    from components import versioned_pusher
    from pipeline.cli.run import write_run_page
    from pipeline.local.run import run_pipeline

    folder = tmp_path_factory.mktemp("story")
    data = folder / "data"
    data.mkdir()
    settings = {**FAST_TRAINING, **LENIENT, **SLICED, **LOGGED}
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
    requests = _serve_and_label(config, config_file, folder)
    run("from_requests")
    return Story(folder, config_file, config, runs, served_after, requests)
