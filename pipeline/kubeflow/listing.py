"""How `mlops kfp list` shows runs and recurring runs.

A table on a terminal; elsewhere (a pipe, a log file, CI) one whole line per run, since
a table rendered for an unknown width wraps cells mid-word and a grep would miss them.
Reads the `kfp_server_api` models by attribute only.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.table import Table

from pipeline.kubeflow.schedule import Schedule

_STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELED": "red",
                "RUNNING": "yellow", "PENDING": "yellow"}


def show(experiment_name: str, runs: Sequence[Any], pipeline_name: str,
         recurring_runs: Sequence[Any], console: Optional[Console] = None) -> None:
    """Prints `mlops kfp list`: tables on a terminal, plain lines otherwise (so a pipe or
    a CI log can be grepped)."""
    console = console or Console(highlight=False)
    rows = [_run_row(run) for run in runs]
    schedules = [_recurring_row(recurring_run) for recurring_run in recurring_runs]
    if console.is_terminal:
        _tables(console, experiment_name, rows, pipeline_name, schedules)
    else:
        _lines(console, experiment_name, rows, pipeline_name, schedules)


def _run_row(run: Any) -> dict[str, str]:
    return {"state": str(run.state or "-"), "created": _when(run.created_at),
            "finished": _when(run.finished_at), "name": run.display_name or "",
            "id": run.run_id}


def _recurring_row(recurring_run: Any) -> dict[str, str]:
    schedule = Schedule.from_server(recurring_run)
    return {"name": schedule.name, "status": str(recurring_run.status or "-").lower(),
            "cron": schedule.cron, "concurrency": str(schedule.max_concurrency),
            "catchup": "no" if schedule.no_catchup else "yes",
            "id": recurring_run.recurring_run_id}


def _tables(console: Console, experiment_name: str, rows: list[dict[str, str]],
            pipeline_name: str, schedules: list[dict[str, str]]) -> None:
    runs = Table(title=f"Runs in experiment {experiment_name} (newest first, UTC)",
                 title_justify="left")
    for column in ("state", "created", "finished", "name", "run id"):
        runs.add_column(column, no_wrap=column in ("state", "created", "finished"))
    for row in rows:
        style = _STATE_STYLE.get(row["state"], "")
        runs.add_row(f"[{style}]{row['state']}[/]" if style else row["state"],
                     row["created"], row["finished"], row["name"], row["id"])
    console.print(runs if rows else f"No runs in experiment {experiment_name} yet.")
    recurring = Table(title=f"Recurring runs of pipeline {pipeline_name}",
                      title_justify="left")
    for column in ("name", "status", "cron (s m h dom mon dow)", "max at once", "catch-up",
                   "recurring run id"):
        recurring.add_column(column)
    for row in schedules:
        recurring.add_row(row["name"], row["status"], row["cron"], row["concurrency"],
                          row["catchup"], row["id"])
    console.print(recurring if schedules else
                  f"No recurring run of pipeline {pipeline_name} (`mlops kfp schedule`).")


def _lines(console: Console, experiment_name: str, rows: list[dict[str, str]],
           pipeline_name: str, schedules: list[dict[str, str]]) -> None:
    def out(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    if rows:
        out(f"Runs in experiment {experiment_name}, newest first (UTC):")
        for row in rows:
            out(f"  {row['state']:<9}  created {row['created']}  finished {row['finished']}"
                f"  {row['name']}  (id {row['id']})")
    else:
        out(f"No runs in experiment {experiment_name} yet.")
    if schedules:
        out(f"Recurring runs of pipeline {pipeline_name}:")
        for row in schedules:
            catchup = "catch-up" if row["catchup"] == "yes" else "no catch-up"
            out(f"  {row['name']}  {row['status']}  cron '{row['cron']}'  at most "
                f"{row['concurrency']} at once  {catchup}  (id {row['id']})")
    else:
        out(f"No recurring run of pipeline {pipeline_name} (`mlops kfp schedule`).")


def _when(moment: Optional[dt.datetime]) -> str:
    """UTC to the second; the server sends 1970-01-01 for a run not finished yet."""
    if moment is None or moment.year <= 1970:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
