"""`mlops serve`, `versions`, `rollback`, `restore`, `label`, `canary`, `promote`, `abort`,
`predict` and `deploy-files`: the model server and what it serves.

The work is `serving/`'s (operations on `models.config`, the REST client, the deployment
files); these commands read the `serving:` section, call it and print what changed. A
serving host need not hold the training data, so the data's files are not checked.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from pipeline.cli.errors import CommandGroup
from pipeline.cli.options import ConfigOption, ConfigSource, VerboseOption, with_config
from pipeline.definition.config import load_config
from pipeline.definition.fingerprints import PROJECT_DIR
from pipeline.errors import UsageError, UserError
from pipeline.runtime.console import log_console
from serving.settings import ServingSettings

app = typer.Typer(cls=CommandGroup)
console = log_console()
PANEL = "Serving"


@app.command("serve", rich_help_panel=PANEL)
@with_config
def serve(source: ConfigSource,
          embedded: bool = typer.Option(False, "--embedded",
                                        help="Use the embedded server even if "
                                             "tensorflow_model_server is on PATH."),
          docker: bool = typer.Option(False, "--docker",
                                      help="Run the tensorflow/serving image with docker "
                                           "compose (serving/deploy/docker-compose.yaml)."),
          verbose: bool = VerboseOption) -> None:
    """Serve the pushed versions over REST and gRPC (TF Serving's API and flags).\f

    On success it does not return: the server (or docker compose) replaces this process
    (`os.execvp`).

    Raises:
        UsageError: `serving.tls.rest_ssl_config_file` or `serving.rollout.enabled` is set
            but the real server or the docker image would serve (plain HTTP only, no
            split) (exit 2).
        UserError: `--docker` without `docker` on PATH (exit 1).
        ConfigError: the config is wrong (exit 2).
        ServingError: the serving directory's models.config is not valid (exit 1).
        OSError: the server files cannot be written, or the server cannot be started.
    """
    from serving import deployment, server_files

    settings = source.serving()
    binary = None if embedded or docker else server_files.real_server_binary()
    tls = settings.serving.tls
    if (docker or binary) and tls.rest_ssl_config_file:
        raise UsageError("serving.tls.rest_ssl_config_file is set, but "
                         + ("the tensorflow/serving image" if docker else binary)
                         + " serves REST over plain HTTP only: use `mlops serve --embedded`, "
                         "or unset it (gRPC over TLS, serving.tls.ssl_config_file, works "
                         "with both)")
    if (docker or binary) and settings.serving.rollout.enabled:
        raise UsageError("serving.rollout.enabled is set, but "
                         + ("the tensorflow/serving image" if docker else binary)
                         + " has no traffic split to roll out with: use `mlops serve "
                         "--embedded`, or unset it")
    files = server_files.write_server_files(settings)
    if docker:
        if not shutil.which("docker"):
            raise UserError("`docker` is not on PATH; use `mlops serve` (real binary or "
                            "embedded server) instead")
        compose = PROJECT_DIR / deployment.DEFAULT_OUT_DIR / "docker-compose.yaml"
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
                  "(`mlops versions`, `mlops rollback`, `mlops label`)"
                  + ("\n  every push rolled out as a canary: `mlops rollout status`"
                     if settings.serving.rollout.enabled and not binary and not docker
                     else ""), highlight=False)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@app.command("versions", rich_help_panel=PANEL)
@with_config
def versions(source: ConfigSource) -> None:
    """List the model's versions: on disk, asked for by the policy, state on the server."""
    from rich.table import Table

    from serving import operations

    settings = source.serving()
    listing = operations.list_versions(settings)
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
    split = operations.canary_state(settings)
    if split.canary_weight is not None:
        console.print(f"Canary split of the bare URL (embedded server): {split.canary_weight:g} % "
                      f"to canary version {split.canary}, the rest to stable version "
                      f"{split.stable} (`mlops promote` / `mlops abort` end it)",
                      highlight=False)
    if listing.server_url is None:
        console.print("(no server answers at the configured REST port: states unknown)")
    if not listing.rows:
        console.print("No versions yet: `make run` pushes the first one.")


@app.command("rollback", rich_help_panel=PANEL)
@with_config
def rollback(source: ConfigSource,
             to: Optional[int] = typer.Option(None, "--to", help="Version to serve (default: "
                                                                 "the one before the served one).")
             ) -> None:
    """Serve an older version instead of the newest; nothing is deleted."""
    from serving import operations

    settings = source.serving()
    _report_served(settings, operations.rollback(settings, to))


@app.command("restore", rich_help_panel=PANEL)
@with_config
def restore(source: ConfigSource) -> None:
    """Serve the newest version again (undo a rollback)."""
    from serving import operations

    settings = source.serving()
    _report_served(settings, operations.restore(settings))


@app.command("label", rich_help_panel=PANEL)
@with_config
def label(source: ConfigSource,
          name: str = typer.Argument(..., help="Label, e.g. stable or canary."),
          version: Optional[int] = typer.Argument(None, help="Version the label points to."),
          remove: bool = typer.Option(False, "--remove", help="Remove the label.")) -> None:
    """Point a version label (e.g. stable, canary) at a version, or remove it.\f

    Raises:
        UsageError: both or neither of VERSION and `--remove` (exit 2).
        OperationError: as `operations.set_label` / `remove_label`: the version is not on
            disk, the label does not exist, or a running server did not load the version
            (exit 1).
    """
    from serving import operations

    settings = source.serving()
    if remove == (version is not None):
        raise UsageError("give a VERSION, or --remove")
    if remove:
        console.print(operations.remove_label(settings, name))
        return
    console.print(operations.set_label(settings, name, version, _load_waiter(settings)),
                  highlight=False)


@app.command("canary", rich_help_panel=PANEL)
@with_config
def canary(source: ConfigSource,
           version: Optional[int] = typer.Argument(
               None, help="Version to send a share of the traffic to (label canary); "
                          "leave out to re-weight the running canary."),
           weight: Optional[float] = typer.Option(
               None, "--weight", "-w", help="Per cent of the requests to the bare model URL "
                                            "for the canary (default: serving.canary.weight)."),
           stable: Optional[int] = typer.Option(
               None, "--stable", help="The stable version (default: the label stable, else "
                                      "the version served now).")) -> None:
    """Split the bare URL's traffic: --weight % to a canary version, the rest to stable
    (embedded server)."""
    from serving import operations

    settings = source.serving()
    if version is None:
        change = operations.set_canary_weight(settings, weight)
    else:
        change = operations.start_canary(settings, version, weight, stable,
                                         _load_waiter(settings))
    console.print(change, highlight=False)


@app.command("promote", rich_help_panel=PANEL)
@with_config
def promote(source: ConfigSource) -> None:
    """The canary becomes stable and the split ends."""
    from serving import operations

    _end_canary(source.serving(), operations.promote)


@app.command("abort", rich_help_panel=PANEL)
@with_config
def abort(source: ConfigSource) -> None:
    """End the canary: all traffic back to stable."""
    from serving import operations

    _end_canary(source.serving(), operations.abort)


@app.command("predict", rich_help_panel=PANEL)
@with_config
def predict(source: ConfigSource,
            json_file: Optional[Path] = typer.Option(None, "--json", help="A TF Serving "
                                                      "request body (instances / inputs / "
                                                      "examples)."),
            csv_file: Optional[Path] = typer.Option(None, "--csv", help="A CSV file laid "
                                                     "out like the training data."),
            row: int = typer.Option(1, "--row", help="CSV data row to send (1 = first)."),
            method: str = typer.Option("predict", "--method",
                                       help="predict, classify or regress."),
            version: Optional[int] = typer.Option(None, "--version"),
            version_label: Optional[str] = typer.Option(None, "--label"),
            signature: str = typer.Option("serving_default", "--signature")) -> None:
    """Send one prediction request to the server and print its answer.\f

    Raises:
        UsageError: both or neither of `--json` and `--csv`, or an unknown `--method`
            (exit 2).
        ClientError: the file cannot be read, the CSV row cannot be typed for the
            signature, or no server answers (exit 1).
        typer.Exit: with code 1 after printing an answer other than HTTP 200.
    """
    from serving import client, server_files

    settings = source.serving()
    if (json_file is None) == (csv_file is None):
        raise UsageError("give exactly one of --json FILE or --csv FILE")
    if method not in ("predict", "classify", "regress"):
        raise UsageError(f"--method must be predict, classify or regress, not {method!r}")
    url, verify = server_files.rest_url(settings), server_files.rest_verify(settings)
    path = client.model_path(settings.serving.model_name, version, version_label)
    if json_file is not None:
        body = client.read_json(json_file)
    else:
        dtypes = client.input_dtypes(url, path, signature, verify)
        body = {"signature_name": signature,
                "instances": [client.instance_from_csv(csv_file, row, dtypes)]}
    status, answer = client.post(url, path, method, body, verify)
    console.print_json(json.dumps(answer))
    if status != 200:
        raise typer.Exit(1)


@app.command("deploy-files", rich_help_panel=PANEL)
def deploy_files(config_file: Optional[str] = ConfigOption,
                 check: bool = typer.Option(False, "--check",
                                            help="Write nothing; exit 1 listing stale files.")
                 ) -> None:
    """Generate serving/deploy/ (docker compose, Kubernetes) for tensorflow_model_server.

    No --set and no MLOPS__ overrides: the committed files follow the committed config.\f

    Raises:
        typer.Exit: with code 1 when `--check` finds files out of date (listed on stderr).
        ConfigError: the config is wrong (exit 2).
    """
    from pipeline.definition.config import resolve_config_path
    from serving import deployment

    settings = load_config(config_file, use_env=False, check_files=False).serving_settings()
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


def _load_waiter(settings: ServingSettings) -> Callable[[int], bool]:
    """Waits, when a server runs, until it serves a version (see `operations.waiter`)."""
    from serving import operations, server_files

    return operations.waiter(server_files.rest_url(settings), settings.serving.model_name,
                             verify=server_files.rest_verify(settings),
                             processes=settings.serving.rest_api_workers)


def _report_served(settings: ServingSettings, change: Any) -> None:
    """Prints what changed and, when a server runs, waits until it serves the version."""
    from serving import operations, server_files

    console.print(change.message, highlight=False)
    url, verify = server_files.rest_url(settings), server_files.rest_verify(settings)
    version = change.version
    if version is None or operations.server_status(url, settings.serving.model_name,
                                                   verify=verify) is None:
        return
    with console.status(f"waiting for the server to serve version {version}"):
        served = _load_waiter(settings)(version)
    console.print(f"The server now serves version {version}." if served else
                  f"The server has not loaded version {version} yet: see `mlops versions`.")


def _end_canary(settings: ServingSettings, action: Callable[..., Any]) -> None:
    """Runs promote or abort, waiting for a running server to let the other version go."""
    from serving import operations, server_files

    gone = operations.unload_waiter(server_files.rest_url(settings),
                                    settings.serving.model_name,
                                    verify=server_files.rest_verify(settings),
                                    processes=settings.serving.rest_api_workers)
    console.print(action(settings, gone).message, highlight=False)
