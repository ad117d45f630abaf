"""`mlops run` and `mlops check-config`: the pipeline itself, on this machine."""
from __future__ import annotations

import time

import typer

from pipeline.cli.errors import CommandGroup
from pipeline.cli.options import ConfigSource, VerboseOption, with_config
from pipeline.definition.config import KUBEFLOW, LOCAL, ConfigError, PipelineConfig
from pipeline.errors import UsageError
from pipeline.records.summary import RunReport
from pipeline.runtime import process
from pipeline.runtime.console import log_console

app = typer.Typer(cls=CommandGroup)
console = log_console()
PANEL = "The pipeline"

ForceOption = typer.Option(False, "--force", "-f",
                           help="Run through TFX even when nothing changed since the last run.")


@app.command("check-config", rich_help_panel=PANEL)
@with_config
def check_config(source: ConfigSource) -> None:
    """Validate the configuration, both profiles, and say what a run would do.\f

    Raises:
        ConfigError: either profile does not load (one line per problem), or a declared
            column is not in the header of the span a run would read (exit 2).
        UsageError: Beam refuses `pipeline.beam_args` of either profile (exit 2).
    """
    from pipeline.definition import beam_options, data_files

    config = source.load()
    kubeflow = source.load(check_files=False, profile=KUBEFLOW)
    files = data_files.span_files(config.data.input_base, config.data.span_pattern,
                                  config.data.span)
    missing = data_files.missing_columns(files, config.declared_columns())
    if missing:
        raise ConfigError(str(source.path), missing)
    process.prepare(verbose=False)  # Beam's import prints Google client warnings
    problems = [f"pipeline.beam_args{'' if c.profile == LOCAL else ' (profile kubeflow)'}: "
                f"{problem}" for c in (config, kubeflow)
                for problem in beam_options.problems(c.pipeline.beam_args)]
    if problems:
        raise UsageError("Beam refuses pipeline.beam_args:\n" +
                         "\n".join(f"  - {p}" for p in problems))
    console.print(f"[green]ok[/]: pipeline [bold]{config.pipeline.name}[/], "
                  f"{len(config.features.all_names())} features, label "
                  f"'{config.label.column}' ({config.label.task}), "
                  f"span {config.data.span} of {config.data.input_base}, "
                  + (f"curated schema {config.data.schema_path}, " if config.data.schema_path
                     else "")
                  + f"{config.training.train_steps} training steps, pushes to "
                  f"{config.serving_model_dir}", highlight=False, soft_wrap=True)
    console.print(f"[green]ok[/]: kubeflow profile: image {kubeflow.kubeflow.image}, root "
                  f"{kubeflow.pipeline.root}, data {kubeflow.data.input_base}, pushes to "
                  f"{kubeflow.serving_model_dir}, caching "
                  f"{'on' if kubeflow.pipeline.enable_cache else 'off'}, schedule "
                  f"'{kubeflow.schedule.cron}'", highlight=False, soft_wrap=True)


@app.command("run", rich_help_panel=PANEL)
@with_config
def run(source: ConfigSource, verbose: bool = VerboseOption,
        force: bool = ForceOption) -> None:
    """Run the pipeline locally: validate data, train, evaluate, push if blessed."""
    from pipeline.local import rerun_guard

    config = source.load()
    previous = None if force else rerun_guard.matching_run(config)
    if previous:
        console.print(f"Nothing changed since run {previous['run_id']} (data, config and "
                      "code are the same): nothing to do, nothing pushed. "
                      "Its summary:\n", highlight=False)
        console.print(previous["summary"], highlight=False, markup=False)
        console.print("(`mlops run --force` re-runs through TFX's cache.)")
        process.exit_now(0)

    process.prepare(verbose)
    console.print(f"Running [bold]{config.pipeline.name}[/] on span {config.data.span} "
                  f"of {config.data.input_base}", highlight=False)
    started = time.monotonic()
    from pipeline.local.progress import RunProgress

    with RunProgress(console) as progress:
        from pipeline.local.run import run_pipeline
        from pipeline.records import summary

        report = run_pipeline(config, verbose=verbose, on_node=progress)
    summary.render(report, console)
    write_run_page(config, report)
    if report.succeeded:
        rerun_guard.remember(config, report.run_id, summary.render_text(report))
    else:
        rerun_guard.forget(config)
    console.print(f"Finished in {time.monotonic() - started:.1f}s.", highlight=False)
    process.exit_now(report.exit_code)


def write_run_page(config: PipelineConfig, report: RunReport) -> None:
    """After a run: its HTML report, named in one line. Never fails the run: its outcome
    stands without its page."""
    from pipeline.records import html

    if not report.run_id:
        return
    try:
        console.print(f"Report: {html.write(config, report)}", highlight=False,
                      soft_wrap=True)
    except Exception as err:  # noqa: BLE001 (the page is a by-product of the run)
        console.print(f"Report not written: {err}", highlight=False)
