"""`mlops rollout status | pause | resume | webhook`: the automatic rollout of each push.

The embedded server runs the loop (`serving/rollout/`, on when `serving.rollout.enabled`);
these commands read and mark its files in the serving directory, so they answer without a
server and reach a running one through the pause marker it checks every tick.
`mlops promote` / `abort` stay the manual overrides of a running rollout. On Kubernetes,
Flagger runs the rollout and `webhook` (cli/rollout_webhook.py) offers it the model checks.
"""
from __future__ import annotations

import json

import typer

from pipeline.cli.errors import CommandGroup
from pipeline.cli.options import ConfigSource, JsonOption, with_config
from pipeline.errors import UserError
from pipeline.runtime.console import log_console

rollout_app = typer.Typer(cls=CommandGroup, add_completion=False, no_args_is_help=True,
                          help="The automatic rollout of each push (embedded server).")
console = log_console()


def _files(source: ConfigSource):
    from serving.rollout.records import RolloutFiles

    settings = source.serving()
    return settings, RolloutFiles(settings.serving.base_directory, settings.serving.model_name)


@rollout_app.command("status")
@with_config
def status(source: ConfigSource, as_json: bool = JsonOption) -> None:
    """Where the rollout stands, and each interval's checks: value, threshold, verdict."""
    settings, files = _files(source)
    try:
        found = files.status()
    except ValueError as err:
        raise UserError(str(err)) from None
    if as_json:
        typer.echo(json.dumps(found, indent=1))
        return
    enabled = settings.serving.rollout.enabled
    console.print(f"{found['model']}: {found['state']}"
                  + (" (paused: `mlops rollout resume` goes on)" if found["paused"] else "")
                  + ("" if enabled else " - rollouts are off (serving.rollout.enabled)"),
                  highlight=False)
    console.print(f"  champion {found['champion'] or '-'}, candidate "
                  f"{found['candidate'] or '-'}"
                  + (f" at {found['weight']:g} % (step {found['step'] + 1}), "
                     f"{found['failed_intervals']} failed of "
                     f"{settings.serving.rollout.threshold}" if found["candidate"] else ""),
                  highlight=False)
    if found["reason"]:
        console.print(f"  {found['reason']}", highlight=False)
    for record in found["decisions"]:
        console.print(_decision_line(record), highlight=False)


def _decision_line(record: dict) -> str:
    """One decision in a line or two: when, the weight and requests, each check."""
    when = record["time"][11:19]
    if record["event"] == "start":
        return f"  {when} start: version {record['candidate']} at {record['weight']:g} %"
    if record["event"] != "interval":
        return f"  {when} {record['event']} ({record['by']}): {record['reason']}"
    checks = ", ".join(_check_text(check) for check in record["checks"]
                       if not check.get("detail", "").startswith("off"))  # not configured
    return (f"  {when} #{record['interval']} at {record['weight']:g} %, requests "
            f"{record['champion_requests']}/{record['candidate_requests']}: "
            f"{record['verdict']} -> {record['next']}\n      {checks}")


def _check_text(check: dict) -> str:
    if check["value"] is None:
        return f"{check['name']} -"
    limit = f" (max {check['threshold']:.3g})" if check["threshold"] is not None else ""
    return f"{check['name']} {check['value']:.3g}{limit}" + (
        " FAIL" if check["verdict"] == "fail" else "")


@rollout_app.command("pause")
@with_config
def pause(source: ConfigSource) -> None:
    """Hold the running rollout where it is: no step, promotion or abort until resumed."""
    _, files = _files(source)
    done = files.pause()
    console.print(f"{files.model_name}: rollout "
                  + ("paused" if done else "was already paused")
                  + " (`mlops rollout resume` goes on; `mlops promote` / `abort` decide now)",
                  highlight=False)


@rollout_app.command("resume")
@with_config
def resume(source: ConfigSource) -> None:
    """Let the rollout go on from the next interval."""
    _, files = _files(source)
    done = files.resume()
    console.print(f"{files.model_name}: rollout " + ("resumed" if done else "was not paused"),
                  highlight=False)


# The Kubernetes rollouts' model check, served to Flagger (its own module: an HTTP server).
from pipeline.cli.rollout_webhook import webhook  # noqa: E402

rollout_app.command("webhook")(webhook)
