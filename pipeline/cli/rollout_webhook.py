"""`mlops rollout webhook`: the model checks of a Kubernetes rollout, served to Flagger.

On Kubernetes the real tensorflow_model_server is rolled out by Flagger
(`mlops deploy-files` with `serving.rollout.enabled`), whose own checks read TF Serving's
Prometheus metrics. This command serves the model check Flagger cannot make, prediction
divergence, as a `rollout` webhook (`serving/rollout/webhook.py`): run it where Flagger and
the `-primary` / `-canary` Services reach it, and set its URL as
`serving.kubernetes.rollout_webhook_url`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.options import ConfigSource, with_config
from pipeline.errors import UserError
from pipeline.runtime.console import log_console

console = log_console()


@with_config
def webhook(source: ConfigSource,
            probe: Path = typer.Option(..., "--probe", metavar="FILE",
                                       help="A TF Serving :predict body (instances or "
                                            "inputs) sent to both sides each interval."),
            primary: Optional[str] = typer.Option(
                None, "--primary", metavar="URL",
                help="The primary's REST URL (default: Flagger's <model>-primary Service)."),
            canary: Optional[str] = typer.Option(
                None, "--canary", metavar="URL",
                help="The canary's REST URL (default: Flagger's <model>-canary Service)."),
            port: int = typer.Option(8080, "--port", help="Port to serve the webhook on."),
            host: str = typer.Option("0.0.0.0", "--host",
                                     help="Address to listen on (Flagger calls from "
                                          "another pod, hence all by default).")) -> None:
    """Serve the model checks to Flagger: each call probes primary and canary and fails
    (HTTP 412) when their predictions diverge (serving.rollout.max_divergence).\f

    Raises:
        UserError: the probe file is not a TF Serving predict body, or the port is taken.
        ConfigError: the config is wrong (exit 2).
    """
    from serving import deployment
    from serving.rollout import webhook as hook

    settings = source.serving()
    try:
        body = hook.read_probe(probe)
    except hook.ProbeError as err:
        raise UserError(str(err)) from None
    checks = hook.ModelChecks(
        settings.serving.model_name,
        primary or deployment.flagger_service_url(settings, "primary"),
        canary or deployment.flagger_service_url(settings, "canary"),
        body, settings.serving.rollout.policy())
    try:
        server = hook.make_server(checks, host, port)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    bound_host, bound_port = server.server_address[:2]
    console.print(f"rollout webhook on http://{bound_host}:{bound_port}/ : "
                  f"{checks.urls['canary']} against {checks.urls['primary']}, max divergence "
                  f"{settings.serving.rollout.max_divergence:g}", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
