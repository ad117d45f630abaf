"""`mlops kfp ...`: put the compiled pipeline on a Kubeflow Pipelines API server and run
it there, now or on a schedule.

    mlops kfp compile [--output PATH]
    mlops kfp image [--push]
    mlops kfp upload [--package PATH] [--version-name NAME]
    mlops kfp run [--package PATH] [--param NAME=VALUE ...] [--wait]
    mlops kfp run --local [--package PATH] [--param NAME=VALUE ...] [--backend 2.0.5|2.5.0]
                  [--pipeline-root DIR] [--volume CLAIM=DIR ...]
    mlops kfp schedule [--cron 'S M H DOM MON DOW' | --cron 'M H DOM MON DOW' --from-crontab]
    mlops kfp unschedule
    mlops kfp list [--limit N]

Every verb loads the config's `kubeflow` profile (the pods' paths: `pipeline.root` is the
run's pipeline root) and takes --config/--set, --host, --token and --verbose. Exit codes:
0 done, 1 the server refused or could not be reached (or a waited-for run failed), 2 the
command line or config is wrong. Errors are one line on stderr.

`run --local` needs no server: it runs the compiled package on this machine as KFP 2.x's
driver and launcher would (`pipeline/kubeflow/local_run.py`, `emulator.py`), waits for it,
and exits 1 when KFP would refuse the package or a task fails.

This module is imported whenever `mlops` starts, so it imports neither kfp nor the
client: each verb does, when it runs.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from pipeline.cli.errors import CommandGroup
from pipeline.cli.options import ConfigSource, with_config
from pipeline.definition.config import KUBEFLOW, PipelineConfig
from pipeline.errors import UsageError, UserError
from pipeline.kubeflow import cron as cron_lib
from pipeline.kubeflow import local_run
from pipeline.kubeflow import package as package_lib
from pipeline.kubeflow.schedule import Schedule, schedule_name

kfp_app = typer.Typer(cls=CommandGroup, add_completion=False, no_args_is_help=True,
                      help="Upload, run and schedule the pipeline on a Kubeflow Pipelines "
                           "API server.")

HostOption = typer.Option(None, "--host", metavar="URL",
                          help="KFP API endpoint (default: kubeflow.host, else "
                               "$KF_PIPELINES_ENDPOINT).")
TokenOption = typer.Option(None, "--token", metavar="TOKEN", show_default=False,
                           help="Bearer token (default: the variable kubeflow.token_env "
                                "names, e.g. $KFP_TOKEN, which keeps it out of the "
                                "shell history).")
VerboseOption = typer.Option(False, "--verbose", "-v",
                             help="Show the kfp SDK's links, warnings and logs (stderr).")
PackageOption = typer.Option(None, "--package", metavar="PATH",
                             help="Compiled package (default: kubeflow.output_file).")
ParamOption = typer.Option(None, "--param", "-p", metavar="NAME=VALUE",
                           help="A pipeline parameter, typed as the pipeline declares it; "
                                "repeat for more.")

_POLL_SECONDS = 10.0

# --- verbs ------------------------------------------------------------------------------

@kfp_app.command("compile")
@with_config
def compile_package(source: ConfigSource,
                    output: Optional[Path] = typer.Option(
                        None, "--output", "-o", metavar="PATH",
                        help="Where to write the package (default: kubeflow.output_file)."),
                    verbose: bool = typer.Option(False, "--verbose", "-v",
                                                 help="Show TensorFlow and TFX logs.")) -> None:
    """Compile the pipeline (kubeflow profile) into a package Kubeflow Pipelines 2.x runs.\f

    Raises:
        UsageError: Beam refuses `pipeline.beam_args` of the kubeflow profile (exit 2).
        CompileError: as `compiler.compile_package`: the pipeline would not run on
            Kubeflow (exit 2).
        ConfigError: the kubeflow profile does not load (exit 2).
    """
    from pipeline.definition import beam_options
    from pipeline.runtime import process

    config = _config(source)
    process.prepare(verbose)
    problems = beam_options.problems(config.pipeline.beam_args)
    if problems:
        raise UsageError("Beam refuses pipeline.beam_args (profile kubeflow): "
                         + "; ".join(problems))
    from pipeline.kubeflow import compiler

    compiled = compiler.compile_package(config, str(output) if output else None)
    typer.echo(f"Wrote {compiled.path}: pipeline {config.pipeline.name}, "
               f"{len(compiled.tasks)} tasks, image {config.kubeflow.image}, "
               f"pipeline root {config.pipeline.root}")
    cached = sorted(set(compiled.tasks) - set(compiled.uncached))
    typer.echo("  caching: " + (f"on for {', '.join(cached)}; off for "
                                f"{', '.join(compiled.uncached)} (they read the data folder or "
                                "the serving directory)" if cached else "off for every task"))
    for claim, tasks in compiled.mounts.items():
        mount = next(v.mount_path for v in config.kubeflow.volumes if v.claim == claim)
        typer.echo(f"  volume {claim} at {mount}: {', '.join(tasks)}")
    if config.kubeflow.env:
        typer.echo(f"  env {', '.join(config.kubeflow.env)}: every task")
    for secret, tasks in compiled.secrets.items():
        typer.echo(f"  secret {secret}: {', '.join(tasks)}")
    typer.echo("Next: `mlops kfp run --local` to try it on this machine; `mlops kfp upload`, "
               "then `mlops kfp run` or `mlops kfp schedule`.")


@kfp_app.command("image")
@with_config
def image(source: ConfigSource,
          push: bool = typer.Option(False, "--push", help="Push the image after building.")
          ) -> None:
    """Build the pipeline image from the Dockerfile, tagged kubeflow.image (needs Docker).\f

    Raises:
        UserError: `docker` is not on PATH, or `docker build` / `docker push` fails (its
            output is above the error line) (exit 1).
        ConfigError: the kubeflow profile does not load (exit 2).
    """
    import shutil
    import subprocess

    config = _config(source)
    docker = shutil.which("docker")
    if docker is None:
        raise UserError("`docker` is not on PATH: build the image where Docker runs (the "
                        "Dockerfile is at the top of this project)")
    from pipeline.definition.fingerprints import PROJECT_DIR

    steps = [[docker, "build", "--build-arg", f"PROJECT_DIR={config.kubeflow.project_dir}",
              "--tag", config.kubeflow.image, str(PROJECT_DIR)]]
    if push:
        steps.append([docker, "push", config.kubeflow.image])
    for argv in steps:
        typer.echo("$ " + " ".join(argv))
        done = subprocess.run(argv, check=False)
        if done.returncode != 0:
            raise UserError(f"`docker {argv[1]}` failed (exit {done.returncode}); see its "
                            "output above")
    typer.echo(f"Built {config.kubeflow.image}" + (" and pushed it" if push else ""))


@kfp_app.command("upload")
@with_config
def upload(source: ConfigSource,
           package: Optional[Path] = PackageOption,
           version_name: Optional[str] = typer.Option(
               None, "--version-name", metavar="NAME",
               help="Name of the new version (default: <pipeline>-<UTC time>)."),
           host: Optional[str] = HostOption, token: Optional[str] = TokenOption,
           verbose: bool = VerboseOption) -> None:
    """Upload the compiled package: a new pipeline, or a new version of it.\f

    Raises:
        PackageError: the package is missing or not a bare PipelineSpec KFP accepts, or
            it was compiled for another pipeline name (exit 1).
        UsageError: no KFP endpoint is configured or given, or it lacks a scheme (exit 2).
        KfpError: the server cannot be reached or refuses a request (exit 1).
    """
    config = _config(source)
    path = _package_path(config, package)
    _check_package_name(package_lib.read_spec(path), path, config)
    package_lib.check_platform_spec(path)  # KFP 2.0.5 would drop a bad one silently
    client = _connect(config, host, token, verbose)
    name = config.pipeline.name
    done = client.upload(path, name, version_name or _version_name(name))
    what = "new pipeline" if done.new_pipeline else "a new version of pipeline"
    typer.echo(f"Uploaded {path} as {what} {name}: version {done.version_name} "
               f"(id {done.version_id})")
    typer.echo(f"  {client.link('version', done.pipeline_id, done.version_id)}")
    stale = [r for r in client.recurring_runs(schedule_name(name))
             if Schedule.from_server(r).pipeline_version_id != done.version_id]
    if stale:
        typer.echo(f"The recurring run {schedule_name(name)} still runs an older "
                   "version: `mlops kfp schedule` moves it to this one.")


@kfp_app.command("run")
@with_config
def run(source: ConfigSource,
        package: Optional[Path] = typer.Option(
            None, "--package", metavar="PATH",
            help="Run this compiled package (default: the latest uploaded version; with "
                 "--local, kubeflow.output_file)."),
        params: Optional[list[str]] = ParamOption,
        wait: bool = typer.Option(False, "--wait",
                                  help="Wait for a final state; exit 1 unless it succeeds."),
        poll_interval: Optional[float] = typer.Option(
            None, "--poll-interval", min=0.0, metavar="SECONDS",
            help=f"How often --wait asks for the state (default: {_POLL_SECONDS:g})."),
        local: bool = typer.Option(
            False, "--local", rich_help_panel="Local run (no server)",
            help="Run the package on this machine as KFP 2.x's driver and launcher would, "
                 "each task's command in this environment (not the image), and wait: "
                 "catches what a cluster would refuse before uploading. --verbose adds "
                 "each task's log file."),
        backend: Optional[str] = typer.Option(
            None, "--backend", metavar="VERSION", rich_help_panel="Local run (no server)",
            help=f"The KFP backend --local emulates: {' or '.join(local_run.BACKENDS)} "
                 f"(default: {local_run.BACKENDS[-1]})."),
        pipeline_root: Optional[str] = typer.Option(
            None, "--pipeline-root", metavar="DIR|URI", rich_help_panel="Local run (no server)",
            help="Where --local's artifacts go: a local folder (default: local_root beside "
                 "kubeflow.output_file, build/kubeflow/local_root; ML Metadata in "
                 "<DIR>.mlmd.sqlite) or a gs:// or s3:// bucket, reached with this "
                 "machine's credentials, with KFP's copies of each artifact into and out of "
                 "every pod emulated."),
        volumes: Optional[list[str]] = typer.Option(
            None, "--volume", metavar="CLAIM=DIR", rich_help_panel="Local run (no server)",
            help="A local folder for a PersistentVolumeClaim the package mounts "
                 "(kubeflow.volumes); repeat for more (default: "
                 "build/kubeflow/volumes/<claim>)."),
        secrets: Optional[list[str]] = typer.Option(
            None, "--secret", metavar="NAME=DIR", rich_help_panel="Local run (no server)",
            help="A local folder standing in for a Kubernetes Secret the package uses "
                 "(kubeflow.secrets): one file per key, as Kubernetes mounts it; repeat "
                 "for more (default: build/kubeflow/secrets/<name>, which must exist)."),
        warm: bool = typer.Option(
            False, "--warm", rich_help_panel="Local run (no server)",
            help="Fork each task from one process that has imported TFX, instead of "
                 "starting a new interpreter per task (as root; quicker, but a pod's own "
                 "start-up is not checked)."),
        host: Optional[str] = HostOption, token: Optional[str] = TokenOption,
        verbose: bool = VerboseOption) -> None:
    """Start a run now, in the config's experiment (created if missing); or, with --local,
    run the compiled package on this machine as KFP would, and wait for it.\f

    Raises:
        UsageError: `--local` with `--host`, `--token`, `--wait` or `--poll-interval`,
            or `--backend`, `--pipeline-root`, `--volume`, `--secret` or `--warm` without
            `--local`; no KFP
            endpoint, or one without a scheme; a bad `--param` (ParameterError) or local
            option (LocalOptionError) (exit 2).
        PackageError: as `upload`, for `--package` or `--local` (exit 1).
        KfpError: the server cannot be reached or refuses a request, or (without
            `--package`) has no such pipeline or no version of it (exit 1).
        LocalRunError: `--local`: KFP would refuse the package, this machine cannot run
            its tasks, or a task fails (exit 1).
        UserError: `--wait` and the run ends FAILED or CANCELED (exit 1).
        typer.Exit: with code 130 when Ctrl-C stops the waiting (the run goes on on the
            server) or the local run.
    """
    if local:
        _refuse_with_local(host=host, token=token, wait=wait, poll_interval=poll_interval)
        _run_locally(_config(source), package, params or (), backend, pipeline_root,
                     volumes or (), secrets or (), verbose, warm)
        return
    given = [name for name, value in (("--backend", backend), ("--pipeline-root", pipeline_root),
                                      ("--volume", volumes), ("--secret", secrets),
                                      ("--warm", warm))
             if value]
    if given:
        raise UsageError(f"{', '.join(given)} {'go' if len(given) > 1 else 'goes'} with "
                         "--local (a server's run takes the profile's pipeline root and "
                         "the cluster's volumes and Secrets)")
    config = _config(source)
    spec = None
    if package is not None:
        spec = package_lib.read_spec(package)
        package_lib.check_platform_spec(package)
        _check_package_name(spec, package, config)
        values = package_lib.typed_parameters(spec, params or ())
    client = _connect(config, host, token, verbose)
    version = None
    if package is None:
        version = client.latest_version(client.require_pipeline(config.pipeline.name))
        values = _version_parameters(version, params or ())
    experiment = client.ensure_experiment(_experiment_name(config))
    run_name = f"{config.pipeline.name} {_now():%Y-%m-%d %H:%M:%S}"
    started = client.start_run(
        experiment_id=experiment.experiment_id, run_name=run_name,
        pipeline_root=config.pipeline.root, parameters=values,
        package=package, version=version)
    what = (f"package {package}" if package is not None
            else f"version {version.display_name}")
    typer.echo(f"Started run '{run_name}' (id {started.run_id}) of {what} in "
               f"experiment {experiment.display_name}")
    typer.echo(f"  {client.link('run', started.run_id)}")
    if wait:
        _wait(client, started.run_id,
              _POLL_SECONDS if poll_interval is None else poll_interval)


@kfp_app.command("schedule")
@with_config
def schedule(source: ConfigSource,
             cron: Optional[str] = typer.Option(
                 None, "--cron", metavar="'S M H DOM MON DOW'",
                 help="Kubeflow cron, six fields, seconds first (default: schedule.cron)."),
             from_crontab: bool = typer.Option(
                 False, "--from-crontab",
                 help="Read --cron as a five-field crontab line (M H DOM MON DOW) and "
                      "convert it: '0 2 * * *' -> '0 0 2 * * *'."),
             params: Optional[list[str]] = ParamOption,
             host: Optional[str] = HostOption, token: Optional[str] = TokenOption,
             verbose: bool = VerboseOption) -> None:
    """Create or update the pipeline's recurring run (delete and re-create when anything
    changed: KFP cannot edit one); run it again and nothing changes.\f

    Raises:
        CronError: the cron line (`--cron` or `schedule.cron`) is not Kubeflow's six
            fields, or `--from-crontab` without `--cron` (exit 2).
        ParameterError: a `--param` the uploaded version does not take (exit 2).
        UsageError: no KFP endpoint is configured or given, or it lacks a scheme (exit 2).
        KfpError: the server cannot be reached or refuses a request, or has no such
            pipeline or no version of it (exit 1).
    """
    config = _config(source)
    cron_line = _cron_line(config, cron, from_crontab)
    client = _connect(config, host, token, verbose)
    pipeline = client.require_pipeline(config.pipeline.name)
    version = client.latest_version(pipeline)
    values = _version_parameters(version, params or ())
    experiment = client.ensure_experiment(_experiment_name(config))
    wanted = Schedule.wanted(
        name=schedule_name(config.pipeline.name), cron=cron_line,
        max_concurrency=config.schedule.max_concurrency, catchup=config.schedule.catchup,
        experiment_id=experiment.experiment_id, pipeline_id=pipeline.pipeline_id,
        pipeline_version_id=version.pipeline_version_id,
        pipeline_root=config.pipeline.root, parameters=values)
    _reconcile(client, wanted, version.display_name)


@kfp_app.command("unschedule")
@with_config
def unschedule(source: ConfigSource,
               host: Optional[str] = HostOption, token: Optional[str] = TokenOption,
               verbose: bool = VerboseOption) -> None:
    """Delete the pipeline's recurring run (runs it started are kept)."""
    config = _config(source)
    client = _connect(config, host, token, verbose)
    name = schedule_name(config.pipeline.name)
    found = client.recurring_runs(name)
    if not found:
        typer.echo(f"No recurring run named {name} on {client.endpoint.host}: "
                   "nothing to delete.")
        return
    for recurring_run in found:
        client.delete_recurring_run(recurring_run)
        typer.echo(f"Deleted recurring run {name} (id {recurring_run.recurring_run_id}).")


@kfp_app.command("list")
@with_config
def list_runs(source: ConfigSource,
              limit: int = typer.Option(10, "--limit", "-n", min=1, max=200,
                                        help="How many runs, newest first."),
              host: Optional[str] = HostOption, token: Optional[str] = TokenOption,
              verbose: bool = VerboseOption) -> None:
    """The experiment's runs (state, created, finished) and the pipeline's recurring runs."""
    from pipeline.kubeflow import listing

    config = _config(source)
    client = _connect(config, host, token, verbose)
    experiment_name = _experiment_name(config)
    experiment = client.find_experiment(experiment_name)
    runs = client.list_runs(experiment.experiment_id, limit) if experiment else []
    pipeline = client.find_pipeline(config.pipeline.name)
    name = schedule_name(config.pipeline.name)
    recurring = [r for r in client.recurring_runs()
                 if r.display_name == name or (
                     pipeline is not None
                     and Schedule.from_server(r).pipeline_id == pipeline.pipeline_id)]
    listing.show(experiment_name, runs, config.pipeline.name, recurring)


# --- the steps the verbs share ----------------------------------------------------------

def _config(source: ConfigSource) -> PipelineConfig:
    """The kubeflow profile: the pods' paths, none of which need exist on this machine."""
    return source.load(check_files=False, profile=KUBEFLOW)


def _connect(config: PipelineConfig, host: Optional[str], token: Optional[str],
             verbose: bool) -> Any:
    from pipeline.kubeflow.client import KfpClient, endpoint

    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
    return KfpClient(endpoint(config, host, token), verbose=verbose)


def _package_path(config: PipelineConfig, package: Optional[Path]) -> Path:
    return package if package is not None else Path(config.kubeflow.output_file)


def _check_package_name(spec: dict, path: Path, config: PipelineConfig) -> None:
    """KFP names the run's ML Metadata context after the spec's pipelineInfo.name; a package
    compiled from another config would file its runs under another pipeline."""
    compiled_for = spec["pipelineInfo"]["name"]
    if compiled_for != config.pipeline.name:
        raise package_lib.PackageError(
            f"{path} was compiled for pipeline '{compiled_for}', the config names "
            f"'{config.pipeline.name}': run `mlops kfp compile`")


def _version_parameters(version: Any, assignments: Any) -> dict[str, Any]:
    """Parameters typed by the uploaded version's own spec, which the server returns."""
    stored = version.pipeline_spec
    if not stored:  # nothing to type them by: sent as text
        return {name: text for name, _, text in (a.partition("=") for a in assignments)}
    return package_lib.typed_parameters(package_lib.bare_spec(stored), assignments)


def _experiment_name(config: PipelineConfig) -> str:
    return config.kubeflow.experiment or config.pipeline.name


def _cron_line(config: PipelineConfig, cron: Optional[str], from_crontab: bool) -> str:
    """The cron to send, checked as the server's parser reads it; a crontab line only
    through the explicit conversion."""
    if from_crontab:
        if cron is None:
            raise cron_lib.CronError("--from-crontab converts the line given with --cron "
                                     "(schedule.cron in the config is six fields already)")
        converted = cron_lib.from_crontab(cron)
        typer.echo(f"Converted the crontab line '{cron}' to Kubeflow's cron '{converted}' "
                   "(seconds first).")
        return converted
    source = "--cron" if cron is not None else "schedule.cron"
    try:
        return cron_lib.validate(cron if cron is not None else config.schedule.cron)
    except cron_lib.CrontabLineError as err:
        hint = (f"; pass --from-crontab to convert it to '{err.converted}'"
                if err.converted and cron is not None else "")
        raise cron_lib.CronError(f"{source}: {err}{hint}") from None
    except cron_lib.CronError as err:
        raise cron_lib.CronError(f"{source}: {err}") from None


def _reconcile(client: Any, wanted: Schedule, version_name: str) -> None:
    """Leave an identical recurring run alone, else delete what differs and create one;
    never two of the same name."""
    existing = client.recurring_runs(wanted.name)
    keep = next((r for r in existing if Schedule.from_server(r) == wanted), None)
    for recurring_run in existing:
        if recurring_run is not keep:
            client.delete_recurring_run(recurring_run)
    summary = (f"cron '{wanted.cron}', at most {wanted.max_concurrency} at once, "
               + ("no catch-up" if wanted.no_catchup else "catching up missed runs")
               + f", pipeline version {version_name}")
    if keep is not None:
        extra = len(existing) - 1
        removed = f" (removed {extra} duplicate{'s' * (extra > 1)})" if extra else ""
        if str(keep.status) == "DISABLED":
            client.enable_recurring_run(keep)
            typer.echo(f"Re-enabled recurring run {wanted.name}, otherwise unchanged: "
                       f"{summary}{removed}.")
        else:
            typer.echo(f"Recurring run {wanted.name} unchanged: {summary}{removed}.")
        typer.echo(f"  {client.link('recurring_run', keep.recurring_run_id)}")
        return
    created = client.create_recurring_run(
        wanted, description="Managed by `mlops kfp schedule`: change the config and run it "
                            "again rather than editing this recurring run.")
    if existing:
        changes = "; ".join(wanted.differences(Schedule.from_server(existing[0])))
        typer.echo(f"Replaced recurring run {wanted.name} (changed: {changes}): {summary}.")
    else:
        typer.echo(f"Created recurring run {wanted.name}: {summary}.")
    typer.echo(f"  {client.link('recurring_run', created.recurring_run_id)}")


def _refuse_with_local(**given: Any) -> None:
    """A local run has no server and always waits: the remote options make no sense."""
    names = {"host": "--host", "token": "--token", "wait": "--wait",
             "poll_interval": "--poll-interval"}
    refused = [names[key] for key, value in given.items() if value not in (None, False)]
    if refused:
        raise UsageError(f"--local runs on this machine and waits for the run: drop "
                         f"{', '.join(refused)}")


def _run_locally(config: PipelineConfig, package: Optional[Path], params: Any,
                 backend: Optional[str], pipeline_root: Optional[str], volumes: Any,
                 secrets: Any, verbose: bool, warm: bool = False) -> None:
    path = _package_path(config, package)
    spec = package_lib.read_spec(path)
    package_lib.check_platform_spec(path)
    _check_package_name(spec, path, config)
    plan = local_run.make_plan(config, path, spec, package_lib.typed_parameters(spec, params),
                               backend, pipeline_root, volumes, secrets)
    local_run.check_package(plan)
    local_run.check_machine(plan)
    for line in local_run.describe(plan):
        typer.echo(line)
    try:
        local_run.execute(plan, typer.echo, lambda text: typer.echo(text, err=True), verbose,
                          warm)
    except KeyboardInterrupt:
        typer.echo("Stopped the local run; the task that was running is left RUNNING in "
                   f"{plan.metadata_path}.", err=True)
        raise typer.Exit(130) from None


def _wait(client: Any, run_id: str, poll_interval: float) -> None:
    try:
        final = client.wait(run_id, poll_interval, lambda state: typer.echo(f"  {state}"))
    except KeyboardInterrupt:
        typer.echo("Stopped waiting; the run goes on (`mlops kfp list` shows it).", err=True)
        raise typer.Exit(130) from None
    state = str(final.state)
    error = getattr(final.error, "message", None) if final.error else None
    line = f"Run {run_id} {state}" + (f": {error}" if error else "")
    if state in ("FAILED", "CANCELED"):
        raise UserError(line)
    typer.echo(line)


def _version_name(pipeline_name: str) -> str:
    """Unique enough for two uploads in the same second (milliseconds), sortable."""
    return f"{pipeline_name}-{_now():%Y%m%d-%H%M%S-%f}"[:-3]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


if __name__ == "__main__":
    kfp_app()
