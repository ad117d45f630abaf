"""`mlops`: the project's one front door. `make` targets call it.

    mlops run [--config FILE] [--set KEY=VALUE ...] [--verbose]
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

from pipeline import quiet
from pipeline.config import ConfigError, PipelineConfig, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Operate the TFX pipeline: validate the config, run it locally.")
console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", metavar="FILE",
                            help="Config file (default: $MLOPS_CONFIG or ./pipeline_config.yaml).")
SetOption = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                         help="Override one config key for this run, e.g. training.train_steps=200.")
VerboseOption = typer.Option(False, "--verbose", "-v",
                             help="Show TensorFlow, Beam and TFX logs.")


def _load(config_file: Optional[str], overrides: Optional[list[str]]) -> PipelineConfig:
    try:
        return load_config(config_file, overrides or ())
    except ConfigError as err:
        err_console.print(f"[bold red]error[/]: {err}", highlight=False)
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
    """One line per finished component, and a spinner naming the one that runs."""

    def __init__(self) -> None:
        self._status = console.status("starting")
        self._started: dict[str, float] = {}
        self._cached: set[str] = set()

    def __enter__(self) -> "_Progress":
        self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._status.__exit__(*exc)

    def __call__(self, node: str, event: str) -> None:
        if event == "running":
            self._started[node] = time.monotonic()
            self._status.update(f"running [bold]{node}[/]")
        elif event == "cached":
            self._cached.add(node)
        elif event == "finished":
            took = time.monotonic() - self._started.get(node, time.monotonic())
            how = "cached" if node in self._cached else "done"
            console.print(f"  [green]✓[/] {node:<32} {how:<7} {took:6.1f}s", highlight=False)


@app.command("run")
def run(config_file: Optional[str] = ConfigOption,
        overrides: Optional[list[str]] = SetOption,
        verbose: bool = VerboseOption) -> None:
    """Run the pipeline locally: validate data, train, evaluate, push if blessed."""
    config = _load(config_file, overrides)
    quiet.configure(verbose)
    console.print(f"Running [bold]{config.pipeline.name}[/] on span {config.data.span} "
                  f"of {config.data.input_base}", highlight=False)
    started = time.monotonic()
    with _Progress() as progress:
        from pipeline import local, run_report

        report = local.run_pipeline(config, verbose=verbose, on_node=progress)
    console.print()
    run_report.render(report, console)
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
