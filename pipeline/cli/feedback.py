"""`mlops skew` and `mlops span-from-requests`: what serving tells the next run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.errors import CommandGroup
from pipeline.cli.options import ConfigSource, JsonOption, VerboseOption, with_config
from pipeline.runtime import process

app = typer.Typer(cls=CommandGroup)
PANEL = "From serving back to training"

RequestsOption = typer.Option(None, "--requests", metavar="DIR",
                              help="The request log: TFRecord files of tf.Examples "
                                   "(default: skew.requests).")


@app.command("skew", rich_help_panel=PANEL)
@with_config
def skew(source: ConfigSource,
         requests: Optional[str] = RequestsOption,
         version: Optional[int] = typer.Option(None, "--version",
                                               help="Compare with this version's training "
                                                    "data (default: the served one)."),
         previous: Optional[str] = typer.Option(None, "--previous", metavar="DIR",
                                                help="An earlier request log: also report "
                                                     "drift between the two."),
         rollout: bool = typer.Option(False, "--rollout",
                                      help="Judge the running rollout's candidate (its "
                                           "training data) and record the verdict as the "
                                           "rollout's `skew` check."),
         as_json: bool = JsonOption,
         verbose: bool = VerboseOption) -> None:
    """Served requests against the training data: skew, drift, anomalies per feature.

    Exit code 1 when a feature is past its threshold or an anomaly is found, so a
    scheduled check can alert.\f

    Raises:
        typer.Exit: always, once the report is printed: 1 when it lists a problem, else 0.
        SkewError: no request log, no served version (or no such `--version`), or no
            record of the run that trained it on this machine; with `--rollout`, no
            rollout running (one `error:` line, exit 1).
        ConfigError: the config is wrong (exit 2).
    """
    config = source.load(check_files=False)
    process.prepare(verbose)
    from pipeline.feedback import skew as skew_lib

    if rollout:
        version = skew_lib.rollout_candidate(config)
    found = skew_lib.skew(config, requests or config.skew.requests, version, previous)
    if rollout:
        recorded = skew_lib.record_for_rollout(config, found)
        typer.echo(f"Rollout: the skew check of candidate {found.version} recorded "
                   f"({recorded})", err=as_json)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=1))
    else:
        from pipeline.records import html as pages

        for line in found.lines():
            typer.echo(line)
        typer.echo(f"Report: {pages.write_skew(config, found)}")
    raise typer.Exit(1 if found.problems else 0)


@app.command("span-from-requests", rich_help_panel=PANEL)
@with_config
def span_from_requests(source: ConfigSource,
                       labels: Path = typer.Option(
                           ..., "--labels", metavar="CSV|DIR",
                           help="A CSV of request keys and labels, or a folder of them (the "
                                "server keeps posted labels in <request log>/<model>/labels)."),
                       key_column: str = typer.Option("request_key", "--key-column",
                                                      help="Its column of request keys."),
                       label_column: Optional[str] = typer.Option(
                           None, "--label-column", help="Its column of labels (default: "
                                                        "label.column)."),
                       requests: Optional[str] = typer.Option(
                           None, "--requests", metavar="DIR",
                           help="The request log (default: skew.requests).")) -> None:
    """Served requests joined to labels known later, written as the next span."""
    config = source.load(check_files=False)
    process.prepare(verbose=False)
    from pipeline.feedback import requests_span

    made = requests_span.span_from_requests(config, requests or config.skew.requests,
                                            str(labels), key_column, label_column)
    typer.echo(f"Wrote span {made.span}: {made.rows} labelled requests -> {made.path} "
               f"({made.requests_without_label} without a label, "
               f"{made.requests_without_key} without a key, left out). The next run "
               "trains on it.")
