"""`mlops`: the project's one front door. `make` targets call it.

    mlops run [--config FILE] [--set KEY=VALUE ...] [--force] [--verbose]
    mlops check-config [--config FILE] [--set KEY=VALUE ...]
    mlops serve [--embedded] [--verbose]         the real tensorflow_model_server if on PATH
    mlops versions                               versions on disk, their state, labels
    mlops rollback [--to N] / mlops restore      serve an older version / the newest again
    mlops label NAME VERSION [--remove]          pin a version label
    mlops canary [VERSION] [--weight W] / mlops promote / mlops abort   canary traffic split
    mlops predict (--json FILE | --csv FILE [--row N]) [--version N | --label L]
    mlops deploy-files [--check]                 docker compose + Kubernetes for the real server
    mlops history [--limit N] [--json | --html] / mlops lineage VERSION [--json]
    mlops report [RUN] [--open]                  a run's HTML report
    mlops skew [--requests DIR] [--previous DIR] served requests vs the training data
    mlops span-from-requests --labels CSV        labelled requests as the next span
    mlops kfp compile | image | upload | run | schedule | unschedule | list   Kubeflow

Exit codes: 0 success (whether or not a model was pushed), 1 the run failed (data
validation, a component error), 2 the configuration or the command line is wrong.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from pipeline import process
from pipeline.cli_options import ConfigOption, SetOption
from pipeline.console import log_console
from pipeline.cli_options import load as load_or_exit
from pipeline.config import KUBEFLOW, LOCAL, ConfigError, load_config, resolve_config_path
from pipeline.kubeflow.commands import kfp_app
from serving.settings import ServingSettings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Operate the TFX pipeline and its model server.")
app.add_typer(kfp_app, name="kfp")  # compile, image, upload, run, schedule, list
console = log_console()

VerboseOption = typer.Option(False, "--verbose", "-v",
                             help="Show TensorFlow, Beam and TFX logs.")
ForceOption = typer.Option(False, "--force", "-f",
                           help="Run through TFX even when nothing changed since the last run.")


@app.command("check-config")
def check_config(config_file: Optional[str] = ConfigOption,
                 overrides: Optional[list[str]] = SetOption) -> None:
    """Validate the configuration, both profiles, and say what a run would do."""
    from pipeline import beam_options, data_files

    config = load_or_exit(config_file, overrides)
    kubeflow = load_or_exit(config_file, overrides, check_files=False, profile=KUBEFLOW)
    files = data_files.span_files(config.data.input_base, config.data.span_pattern,
                                  config.data.span)
    missing = data_files.missing_columns(files, config.declared_columns())
    if missing:
        source = str(resolve_config_path(config_file).resolve())
        typer.echo(f"error: {ConfigError(source, missing)}", err=True)
        raise typer.Exit(2)
    process.prepare(verbose=False)  # Beam's import prints Google client warnings
    problems = [f"pipeline.beam_args{'' if c.profile == LOCAL else ' (profile kubeflow)'}: "
                f"{problem}" for c in (config, kubeflow)
                for problem in beam_options.problems(c.pipeline.beam_args)]
    if problems:
        typer.echo("error: Beam refuses pipeline.beam_args:\n" +
                   "\n".join(f"  - {p}" for p in problems), err=True)
        raise typer.Exit(2)
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


@app.command("run")
def run(config_file: Optional[str] = ConfigOption,
        overrides: Optional[list[str]] = SetOption,
        verbose: bool = VerboseOption,
        force: bool = ForceOption) -> None:
    """Run the pipeline locally: validate data, train, evaluate, push if blessed."""
    from pipeline import rerun_guard

    config = load_or_exit(config_file, overrides)
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
    from pipeline.progress import RunProgress

    with RunProgress(console) as progress:
        from pipeline import local, run_report

        report = local.run_pipeline(config, verbose=verbose, on_node=progress)
    run_report.render(report, console)
    _write_run_report(config, report)
    if report.succeeded:
        rerun_guard.remember(config, report.run_id, run_report.render_text(report))
    else:
        rerun_guard.forget(config)
    console.print(f"Finished in {time.monotonic() - started:.1f}s.", highlight=False)
    process.exit_now(report.exit_code)


# --- what happened ----------------------------------------------------------------------

JsonOption = typer.Option(False, "--json", help="Print JSON, for scripts.")


@app.command("history")
def history_(limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1,
                                                 help="Show at most N runs."),
             as_json: bool = JsonOption,
             html: bool = typer.Option(False, "--html",
                                       help="Also write the cross-run HTML page and print "
                                            "its path."),
             config_file: Optional[str] = ConfigOption,
             overrides: Optional[list[str]] = SetOption) -> None:
    """The pipeline's runs, newest first: span, outcome, metrics, verdict, push."""
    import json

    from pipeline import history

    config = load_or_exit(config_file, overrides, check_files=False)
    entries = history.history(config, limit)
    if html:
        from pipeline import report as html_report

        typer.echo(f"History page: {html_report.write_history(config, entries)}")
        return
    if as_json:
        typer.echo(json.dumps([entry.to_json() for entry in entries], indent=1))
        return
    for entry in entries:
        typer.echo(entry.line())
    if not entries:
        typer.echo(f"No runs yet of {config.pipeline.name} (metadata: "
                   f"{config.pipeline.metadata_path}; versions: {config.serving_model_dir}).")


@app.command("lineage")
def lineage_(version: int = typer.Argument(..., help="A version in the serving directory."),
             as_json: bool = JsonOption,
             config_file: Optional[str] = ConfigOption,
             overrides: Optional[list[str]] = SetOption) -> None:
    """Where a served version came from: run, data, statistics, schema, model, evaluation."""
    import json

    from pipeline import lineage

    config = load_or_exit(config_file, overrides, check_files=False)
    try:
        found = lineage.lineage(config, version)
    except lineage.LineageError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=1))
        return
    for line in found.lines():
        typer.echo(line)


@app.command("span-from-requests")
def span_from_requests_(labels: Path = typer.Option(..., "--labels", metavar="CSV",
                                                    help="A CSV of request keys and labels."),
                        key_column: str = typer.Option("request_key", "--key-column",
                                                       help="Its column of request keys."),
                        label_column: Optional[str] = typer.Option(
                            None, "--label-column", help="Its column of labels (default: "
                                                         "label.column)."),
                        requests: Optional[str] = typer.Option(
                            None, "--requests", metavar="DIR",
                            help="The request log (default: skew.requests)."),
                        config_file: Optional[str] = ConfigOption,
                        overrides: Optional[list[str]] = SetOption) -> None:
    """Served requests joined to labels known later, written as the next span."""
    config = load_or_exit(config_file, overrides, check_files=False)
    process.prepare(verbose=False)
    from pipeline import requests_span

    try:
        made = requests_span.span_from_requests(config, requests or config.skew.requests,
                                                str(labels), key_column, label_column)
    except requests_span.SpanError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Wrote span {made.span}: {made.rows} labelled requests -> {made.path} "
               f"({made.requests_without_label} without a label, "
               f"{made.requests_without_key} without a key, left out). The next run "
               "trains on it.")


@app.command("skew")
def skew_(requests: Optional[str] = typer.Option(
              None, "--requests", metavar="DIR",
              help="The request log: TFRecord files of tf.Examples (default: skew.requests)."),
          version: Optional[int] = typer.Option(None, "--version",
                                                help="Compare with this version's training "
                                                     "data (default: the served one)."),
          previous: Optional[str] = typer.Option(None, "--previous", metavar="DIR",
                                                 help="An earlier request log: also report "
                                                      "drift between the two."),
          as_json: bool = JsonOption,
          config_file: Optional[str] = ConfigOption,
          overrides: Optional[list[str]] = SetOption,
          verbose: bool = VerboseOption) -> None:
    """Served requests against the training data: skew, drift, anomalies per feature.

    Exit code 1 when a feature is past its threshold or an anomaly is found, so a
    scheduled check can alert."""
    import json

    config = load_or_exit(config_file, overrides, check_files=False)
    process.prepare(verbose)
    from pipeline import skew

    try:
        report = skew.skew(config, requests or config.skew.requests, version, previous)
    except skew.SkewError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        from pipeline import report as html_report

        for line in report.lines():
            typer.echo(line)
        typer.echo(f"Report: {html_report.write_skew(config, report)}")
    raise typer.Exit(1 if report.problems else 0)


# --- serving ----------------------------------------------------------------------------

@app.command("serve")
def serve(config_file: Optional[str] = ConfigOption,
          overrides: Optional[list[str]] = SetOption,
          embedded: bool = typer.Option(False, "--embedded",
                                        help="Use the embedded server even if "
                                             "tensorflow_model_server is on PATH."),
          docker: bool = typer.Option(False, "--docker",
                                      help="Run the tensorflow/serving image with docker "
                                           "compose (serving/deploy/docker-compose.yaml)."),
          verbose: bool = VerboseOption) -> None:
    """Serve the pushed versions over REST and gRPC (TF Serving's API and flags)."""
    import shutil

    from serving import deployment, server_files

    settings = _serving_settings(config_file, overrides)
    binary = None if embedded or docker else server_files.real_server_binary()
    tls = settings.serving.tls
    if (docker or binary) and tls.rest_ssl_config_file:
        typer.echo("error: serving.tls.rest_ssl_config_file is set, but "
                   + ("the tensorflow/serving image" if docker else binary)
                   + " serves REST over plain HTTP only: use `mlops serve --embedded`, or "
                   "unset it (gRPC over TLS, serving.tls.ssl_config_file, works with both)",
                   err=True)
        raise typer.Exit(2)
    files = server_files.write_server_files(settings)
    if docker:
        if not shutil.which("docker"):
            typer.echo("error: `docker` is not on PATH; use `mlops serve` (real binary or "
                       "embedded server) instead", err=True)
            raise typer.Exit(1)
        compose = Path(__file__).resolve().parents[1] / deployment.DEFAULT_OUT_DIR / \
            "docker-compose.yaml"
        argv = ["docker", "compose", "-f", str(compose), "up"]
        os.environ[deployment.SERVING_DIR_VAR] = settings.serving.base_directory
        if tls.ssl_config_file:
            os.environ[deployment.SSL_CONFIG_VAR] = tls.ssl_config_file
        which = f"docker compose ({settings.serving.image})"
    else:
        argv = server_files.server_command(settings, files, sys.executable, binary,
                                           ("--verbose",) if verbose and not binary else ())
        which = f"tensorflow_model_server ({binary})" if binary else "the embedded server"
    console.print(f"Serving [bold]{settings.serving.model_name}[/] from "
                  f"{settings.serving_model_dir} with {which}\n"
                  f"  REST {server_files.rest_url(settings)}/v1/models/"
                  f"{settings.serving.model_name}   gRPC {settings.serving.host}:"
                  f"{settings.serving.grpc_port}{' (TLS)' if tls.ssl_config_file else ''}\n"
                  f"  versions, rollbacks and labels: {files.models_config} "
                  "(`mlops versions`, `mlops rollback`, `mlops label`)", highlight=False)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def _serving_settings(config_file: Optional[str],
                      overrides: Optional[list[str]]) -> ServingSettings:
    """What the serving commands need; a serving host need not hold the training data."""
    return load_or_exit(config_file, overrides, check_files=False).serving_settings()


def _operation(action):
    """Runs a serving operation, turning its expected failures into one-line errors."""
    from serving.client import ClientError
    from serving.errors import ServingError
    from serving.operations import OperationError

    try:
        return action()
    except (OperationError, ClientError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    except ServingError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(1)


@app.command("versions")
def versions(config_file: Optional[str] = ConfigOption,
             overrides: Optional[list[str]] = SetOption) -> None:
    """List the model's versions: on disk, asked for by the policy, state on the server."""
    from rich.table import Table

    from serving import operations

    settings = _serving_settings(config_file, overrides)
    listing = _operation(lambda: operations.list_versions(settings))
    table = Table(title=f"{listing.model_name} (policy: {listing.policy})", title_justify="left")
    for column in ("version", "served by policy", "server state", "labels", "pushed at",
                   "error"):
        table.add_column(column)
    for row in listing.rows:
        table.add_row(str(row.version) + ("" if row.on_disk else " (gone)"),
                      "yes" if row.aspired else "no", row.state or "-",
                      ", ".join(row.labels), row.pushed_at[:19].replace("T", " "),
                      row.error)
    console.print(table)
    split = _operation(lambda: operations.canary_state(settings))
    if split.canary_weight is not None:
        console.print(f"Canary split of the bare URL (embedded server): {split.canary_weight:g} % "
                      f"to canary version {split.canary}, the rest to stable version "
                      f"{split.stable} (`mlops promote` / `mlops abort` end it)",
                      highlight=False)
    if listing.server_url is None:
        console.print("(no server answers at the configured REST port: states unknown)")
    if not listing.rows:
        console.print("No versions yet: `make run` pushes the first one.")


def _report_served(settings: ServingSettings, change) -> None:
    """Prints what changed and, when a server runs, waits until it serves the version."""
    from serving import operations, server_files

    console.print(change.message, highlight=False)
    url, verify = server_files.rest_url(settings), server_files.rest_verify(settings)
    version = change.version
    if version is None or operations.server_status(url, settings.serving.model_name,
                                                   verify=verify) is None:
        return
    with console.status(f"waiting for the server to serve version {version}"):
        served = operations.waiter(url, settings.serving.model_name, verify=verify)(version)
    console.print(f"The server now serves version {version}." if served else
                  f"The server has not loaded version {version} yet: see `mlops versions`.")


@app.command("rollback")
def rollback(to: Optional[int] = typer.Option(None, "--to", help="Version to serve "
                                                "(default: the one before the served one)."),
             config_file: Optional[str] = ConfigOption,
             overrides: Optional[list[str]] = SetOption) -> None:
    """Serve an older version instead of the newest; nothing is deleted."""
    from serving import operations

    settings = _serving_settings(config_file, overrides)
    _report_served(settings, _operation(lambda: operations.rollback(settings, to)))


@app.command("restore")
def restore(config_file: Optional[str] = ConfigOption,
            overrides: Optional[list[str]] = SetOption) -> None:
    """Serve the newest version again (undo a rollback)."""
    from serving import operations

    settings = _serving_settings(config_file, overrides)
    _report_served(settings, _operation(lambda: operations.restore(settings)))


@app.command("label")
def label(name: str = typer.Argument(..., help="Label, e.g. stable or canary."),
          version: Optional[int] = typer.Argument(None, help="Version the label points to."),
          remove: bool = typer.Option(False, "--remove", help="Remove the label."),
          config_file: Optional[str] = ConfigOption,
          overrides: Optional[list[str]] = SetOption) -> None:
    """Point a version label (e.g. stable, canary) at a version, or remove it."""
    from serving import operations, server_files

    settings = _serving_settings(config_file, overrides)
    if remove == (version is not None):
        typer.echo("error: give a VERSION, or --remove", err=True)
        raise typer.Exit(2)
    if remove:
        console.print(_operation(lambda: operations.remove_label(settings, name)))
        return
    wait = operations.waiter(server_files.rest_url(settings), settings.serving.model_name,
                             verify=server_files.rest_verify(settings))
    console.print(_operation(lambda: operations.set_label(settings, name, version, wait)),
                  highlight=False)


@app.command("canary")
def canary(version: Optional[int] = typer.Argument(
               None, help="Version to send a share of the traffic to (label canary); "
                          "leave out to re-weight the running canary."),
           weight: Optional[float] = typer.Option(
               None, "--weight", "-w", help="Per cent of the requests to the bare model URL "
                                            "for the canary (default: serving.canary.weight)."),
           stable: Optional[int] = typer.Option(
               None, "--stable", help="The stable version (default: the label stable, else "
                                      "the version served now)."),
           config_file: Optional[str] = ConfigOption,
           overrides: Optional[list[str]] = SetOption) -> None:
    """Split the bare URL's traffic: --weight % to a canary version, the rest to stable
    (embedded server)."""
    from serving import operations, server_files

    settings = _serving_settings(config_file, overrides)
    wait = operations.waiter(server_files.rest_url(settings), settings.serving.model_name,
                             verify=server_files.rest_verify(settings))
    console.print(_operation(lambda: operations.start_canary(settings, version, weight,
                                                             stable, wait)),
                  highlight=False)


def _end_canary(settings: ServingSettings, action) -> None:
    from serving import operations, server_files

    gone = operations.unload_waiter(server_files.rest_url(settings),
                                    settings.serving.model_name,
                                    verify=server_files.rest_verify(settings))
    console.print(_operation(lambda: action(settings, gone)).message, highlight=False)


@app.command("promote")
def promote(config_file: Optional[str] = ConfigOption,
            overrides: Optional[list[str]] = SetOption) -> None:
    """The canary becomes stable and the split ends."""
    from serving import operations

    _end_canary(_serving_settings(config_file, overrides), operations.promote)


@app.command("abort")
def abort(config_file: Optional[str] = ConfigOption,
          overrides: Optional[list[str]] = SetOption) -> None:
    """End the canary: all traffic back to stable."""
    from serving import operations

    _end_canary(_serving_settings(config_file, overrides), operations.abort)


@app.command("predict")
def predict(json_file: Optional[Path] = typer.Option(None, "--json", help="A TF Serving "
                                                      "request body (instances / inputs / "
                                                      "examples)."),
            csv_file: Optional[Path] = typer.Option(None, "--csv", help="A CSV file laid "
                                                     "out like the training data."),
            row: int = typer.Option(1, "--row", help="CSV data row to send (1 = first)."),
            method: str = typer.Option("predict", "--method",
                                       help="predict, classify or regress."),
            version: Optional[int] = typer.Option(None, "--version"),
            version_label: Optional[str] = typer.Option(None, "--label"),
            signature: str = typer.Option("serving_default", "--signature"),
            config_file: Optional[str] = ConfigOption,
            overrides: Optional[list[str]] = SetOption) -> None:
    """Send one prediction request to the server and print its answer."""
    import json

    from serving import client, server_files

    settings = _serving_settings(config_file, overrides)
    if (json_file is None) == (csv_file is None):
        typer.echo("error: give exactly one of --json FILE or --csv FILE", err=True)
        raise typer.Exit(2)
    if method not in ("predict", "classify", "regress"):
        typer.echo(f"error: --method must be predict, classify or regress, not {method!r}",
                   err=True)
        raise typer.Exit(2)
    url, verify = server_files.rest_url(settings), server_files.rest_verify(settings)
    path = client.model_path(settings.serving.model_name, version, version_label)

    def request() -> tuple[int, object]:
        if json_file is not None:
            body = client.read_json(json_file)
        else:
            dtypes = client.input_dtypes(url, path, signature, verify)
            body = {"signature_name": signature,
                    "instances": [client.instance_from_csv(csv_file, row, dtypes)]}
        return client.post(url, path, method, body, verify)

    status, answer = _operation(request)
    console.print_json(json.dumps(answer))
    if status != 200:
        raise typer.Exit(1)


@app.command("deploy-files")
def deploy_files(config_file: Optional[str] = ConfigOption,
                 check: bool = typer.Option(False, "--check",
                                            help="Write nothing; exit 1 listing stale files.")
                 ) -> None:
    """Generate serving/deploy/ (docker compose, Kubernetes) for tensorflow_model_server."""
    from serving import deployment

    try:  # no --set / MLOPS__ overrides: the committed files follow the committed config
        settings = load_config(config_file, use_env=False,
                               check_files=False).serving_settings()
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    out_dir = resolve_config_path(config_file).resolve().parent / deployment.DEFAULT_OUT_DIR
    if check:
        stale = deployment.check(settings, out_dir)
        for path in stale:
            typer.echo(f"out of date: {path}", err=True)
        if stale:
            typer.echo("run `mlops deploy-files` and commit the result", err=True)
            raise typer.Exit(1)
        console.print(f"[green]ok[/]: {out_dir} matches the config", highlight=False)
        return
    paths = deployment.write(settings, out_dir)
    console.print(f"wrote {len(paths)} files under {out_dir}", highlight=False)


# --- the HTML report --------------------------------------------------------------------

@app.command("report")
def report_(run_id: Optional[str] = typer.Argument(None, metavar="[RUN]",
                                                   help="A run id (default: the newest run)."),
            open_page: bool = typer.Option(False, "--open", help="Open it in a browser."),
            output: Optional[str] = typer.Option(None, "--output", "-o",
                                                 help="Write it here instead of beside the "
                                                      "run's artifacts."),
            config_file: Optional[str] = ConfigOption,
            overrides: Optional[list[str]] = SetOption) -> None:
    """Write a run's HTML report (metrics, slices, the model over time, data) and print its path."""
    import webbrowser

    config = load_or_exit(config_file, overrides, check_files=False)
    process.prepare(verbose=False)  # TFMA, imported to read metrics by slice, is noisy
    from pipeline import report as html_report

    try:
        record = html_report.find(config, run_id)
    except html_report.ReportError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    path = html_report.write(config, record, output)
    typer.echo(path)
    if open_page:
        webbrowser.open(Path(path).as_uri())
    process.exit_now(0)  # TensorFlow, once imported, does not tear down quietly


def _write_run_report(config, report) -> None:
    """After `mlops run`: the run's HTML report, named in one line (never fails the run)."""
    from pipeline import report as html_report

    if not report.run_id:
        return
    try:
        console.print(f"Report: {html_report.write(config, report)}", highlight=False,
                      soft_wrap=True)
    except Exception as err:  # the run's outcome stands without its page
        console.print(f"Report not written: {err}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
