"""`mlops history`, `lineage` and `report`: what the pipeline's runs did, read back."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.errors import CommandGroup
from pipeline.cli.options import ConfigSource, JsonOption, with_config
from pipeline.runtime import process

app = typer.Typer(cls=CommandGroup)
PANEL = "What happened"


@app.command("history", rich_help_panel=PANEL)
@with_config
def history(source: ConfigSource,
            limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1,
                                                help="Show at most N runs."),
            as_json: bool = JsonOption,
            html: bool = typer.Option(False, "--html",
                                      help="Also write the cross-run HTML page and print "
                                           "its path.")) -> None:
    """The pipeline's runs, newest first: span, outcome, metrics, verdict, push, rollout."""
    from pipeline.records import history as history_lib

    config = source.load(check_files=False)
    entries = history_lib.history(config, limit)
    if html:
        from pipeline.records import html as pages

        typer.echo(f"History page: {pages.write_history(config, entries)}")
        return
    if as_json:
        typer.echo(json.dumps([entry.to_json() for entry in entries], indent=1))
        return
    for entry in entries:
        typer.echo(entry.line())
    if not entries:
        typer.echo(f"No runs yet of {config.pipeline.name} (metadata: "
                   f"{config.pipeline.metadata_path}; versions: {config.serving_model_dir}).")


@app.command("lineage", rich_help_panel=PANEL)
@with_config
def lineage(source: ConfigSource,
            version: int = typer.Argument(..., help="A version in the serving directory."),
            as_json: bool = JsonOption) -> None:
    """Where a served version came from, and how its rollout went.

    Its run, data, statistics, schema, model and evaluation; then its automatic rollout:
    promoted or aborted, when, by what, on which checks.
    """
    from pipeline.records import lineage as lineage_lib

    found = lineage_lib.lineage(source.load(check_files=False), version)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=1))
        return
    for line in found.lines():
        typer.echo(line)


@app.command("report", rich_help_panel=PANEL)
@with_config
def report(source: ConfigSource,
           run_id: Optional[str] = typer.Argument(None, metavar="[RUN]",
                                                  help="A run id (default: the newest run)."),
           open_page: bool = typer.Option(False, "--open", help="Open it in a browser."),
           output: Optional[str] = typer.Option(None, "--output", "-o",
                                                help="Write it here instead of beside the "
                                                     "run's artifacts.")) -> None:
    """Write a run's HTML report (metrics, slices, the model over time, data) and print its path."""
    import webbrowser

    config = source.load(check_files=False)
    process.prepare(verbose=False)  # TFMA, imported to read metrics by slice, is noisy
    from pipeline.records import html as pages

    path = pages.write(config, pages.find(config, run_id), output)
    typer.echo(path)
    if open_page:
        webbrowser.open(Path(path).as_uri())
    process.exit_now(0)  # TensorFlow, once imported, does not tear down quietly
