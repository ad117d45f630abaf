"""`mlops`: the project's one front door. `make` targets call it.

    mlops run [--config FILE] [--set KEY=VALUE ...] [--force] [--verbose]
    mlops check-config [--config FILE] [--set KEY=VALUE ...]

Exit codes: 0 success (whether or not a model was pushed), 1 the run failed (data
validation, a component error), 2 the configuration or the command line is wrong.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

import typer
from rich.console import Console

from pipeline import process
from pipeline.config import ConfigError, PipelineConfig, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Operate the TFX pipeline: validate the config, run it locally.")
console = Console()

ConfigOption = typer.Option(None, "--config", "-c", metavar="FILE",
                            help="Config file (default: $MLOPS_CONFIG or ./pipeline_config.yaml).")
SetOption = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                         help="Override one config key for this run, e.g. training.train_steps=200.")
VerboseOption = typer.Option(False, "--verbose", "-v",
                             help="Show TensorFlow, Beam and TFX logs.")
ForceOption = typer.Option(False, "--force", "-f",
                           help="Run through TFX even when nothing changed since the last run.")


def _load(config_file: Optional[str], overrides: Optional[list[str]]) -> PipelineConfig:
    try:
        return load_config(config_file, overrides or ())
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)  # unwrapped: one problem per line
        raise typer.Exit(2)


@app.command("check-config")
def check_config(config_file: Optional[str] = ConfigOption,
                 overrides: Optional[list[str]] = SetOption) -> None:
    """Validate the configuration and say what a run would do."""
    config = _load(config_file, overrides)
    console.print(f"[green]ok[/]: pipeline [bold]{config.pipeline.name}[/], "
                  f"{len(config.features.all_names())} features, label "
                  f"'{config.label.column}' ({config.label.task}), "
                  f"span {config.data.span} of {config.data.input_base}, "
                  f"{config.training.train_steps} training steps, pushes to "
                  f"{config.serving_model_dir}", highlight=False)


class _Progress:
    """A transient spinner naming the running component; the summary lists them all."""

    def __init__(self) -> None:
        self._status = console.status("starting (importing TensorFlow and TFX)")
        self._done = 0

    def __enter__(self) -> "_Progress":
        self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._status.__exit__(*exc)

    def __call__(self, node: str, event: str) -> None:
        if event == "running":
            self._status.update(f"running [bold]{node}[/] ({self._done} components done)")
        elif event in ("finished", "failed"):
            self._done += 1


@app.command("run")
def run(config_file: Optional[str] = ConfigOption,
        overrides: Optional[list[str]] = SetOption,
        verbose: bool = VerboseOption,
        force: bool = ForceOption) -> None:
    """Run the pipeline locally: validate data, train, evaluate, push if blessed."""
    from pipeline import rerun_guard

    config = _load(config_file, overrides)
    previous = None if force else rerun_guard.matching_run(config)
    if previous:
        console.print(f"Nothing changed since run {previous['run_id']} (data, config and "
                      "code are the same): nothing to do, nothing pushed. "
                      "Its summary:\n", highlight=False)
        console.print(previous["summary"], highlight=False, markup=False)
        console.print("(`mlops run --force` re-runs through TFX's cache.)")
        _exit(0)

    process.prepare(verbose)
    console.print(f"Running [bold]{config.pipeline.name}[/] on span {config.data.span} "
                  f"of {config.data.input_base}", highlight=False)
    started = time.monotonic()
    with _Progress() as progress:
        from pipeline import local, run_report

        report = local.run_pipeline(config, verbose=verbose, on_node=progress)
    run_report.render(report, console)
    if report.succeeded:
        rerun_guard.remember(config, report.run_id, run_report.render_text(report))
    else:
        rerun_guard.forget(config)
    console.print(f"Finished in {time.monotonic() - started:.1f}s.", highlight=False)
    _exit(report.exit_code)


def _exit(code: int) -> None:
    """Leaves without running TensorFlow's interpreter-exit finalizers.

    TF 2.16 prints "Exception ignored in AtomicFunction.__del__" tracebacks while Python
    tears modules down; nothing remains to clean up once the report is printed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
