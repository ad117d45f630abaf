"""Command-line flags with tensorflow_model_server's names, so one can replace the other.

``--flag=value`` and ``--flag value`` both work; boolean flags take ``--flag``,
``--flag=true`` or ``--flag=false`` as TensorFlow's flag parser does. Flags of the real
server that do not apply to the embedded one are refused by name rather than ignored.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Optional, Sequence

from serving.options import ServerOptions


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_HELP = {
    "port": "gRPC port (TF Serving's default 8500; 0 picks a free port)",
    "rest_api_port": "HTTP/REST port (8501; 0 picks a free port)",
    "rest_api_timeout_in_ms": "timeout of a REST prediction call, in ms (0: none)",
    "model_name": "name of the model when --model_base_path is used",
    "model_base_path": "directory holding the model's integer version directories",
    "model_config_file": "models.config (ModelServerConfig text proto); overrides the two above",
    "model_config_file_poll_wait_seconds": "re-read the config file this often (0: never)",
    "file_system_poll_wait_seconds": "poll the base paths for versions this often (0: once)",
    "enable_batching": "merge concurrent requests into one model call",
    "batching_parameters_file": "BatchingParameters text proto",
    "monitoring_config_file": "MonitoringConfig text proto (enables Prometheus metrics)",
    "enable_model_warmup": "warm each version up before it serves",
    "ssl_config_file": "SSLConfig text proto (server_key, server_cert, custom_ca, "
                       "client_verify): gRPC over TLS",
    "tensorflow_session_parallelism": "threads of each model session's intra- and inter-op "
                                      "pools (0: auto: TensorFlow's one per core, or with "
                                      "--rest_api_workers above 1 the cores divided among "
                                      "the processes); ignored when either flag below is set",
    "tensorflow_intra_op_parallelism": "threads that run one op in parallel (0: auto)",
    "tensorflow_inter_op_parallelism": "threads that run independent ops at once (0: auto)",
    "host": "[embedded server] address to listen on (0.0.0.0 opens it to the network)",
    "max_request_bytes": "[embedded server] largest accepted request body",
    "num_model_threads": "[embedded server] threads running model calls",
    "rest_read_timeout_seconds": "[embedded server] a REST request's head and body must "
                                 "arrive within this, else 408 and a close (0: no limit)",
    "rest_idle_timeout_seconds": "[embedded server] close a kept-alive REST connection idle "
                                 "this long (0: never)",
    "rest_max_connections": "[embedded server] open REST connections; at the bound a new "
                            "one replaces the one waiting longest for a request head, or "
                            "gets 503 when all are busy (0: no bound)",
    "rest_ssl_config_file": "[embedded server] SSLConfig text proto, as --ssl_config_file: "
                            "HTTPS on the REST port",
    "rest_api_workers": "[embedded server] processes answering the REST port (SO_REUSEPORT); "
                        "each loads every model, gRPC stays on the first",
    "request_log_sample_rate": "[embedded server] share of requests logged as tf.Examples "
                               "for `mlops skew` (0: none)",
    "request_log_dir": "[embedded server] where the request log goes (a folder per model)",
    "rollout": "[embedded server] roll every new push out as a canary that live checks "
               "promote or abort (needs --model_config_file)",
    "rollout_mode": "[embedded server] canary: the candidate answers its share of requests; "
                    "shadow: the champion answers all, the candidate's answers to its "
                    "share are only measured",
    "rollout_steps": "[embedded server] the candidate's shares, per cent, one per passed "
                     "interval; passing the last promotes",
    "rollout_interval_seconds": "[embedded server] length of each measured interval",
    "rollout_threshold": "[embedded server] failed intervals that abort the rollout",
    "rollout_min_requests": "[embedded server] requests per version an interval needs to "
                            "decide anything (fewer: hold)",
    "rollout_max_error_rate": "[embedded server] share of its requests the candidate may fail "
                              "that the champion answers",
    "rollout_max_p99_ms": "[embedded server] the candidate's p99 latency limit (0: none)",
    "rollout_max_p99_ratio": "[embedded server] candidate p99 at most champion p99 x this "
                             "+ --rollout_p99_slack_ms",
    "rollout_p99_slack_ms": "[embedded server] see --rollout_max_p99_ratio",
    "rollout_max_divergence": "[embedded server] Jensen-Shannon divergence (0-1) between the "
                              "two versions' outputs",
    "rollout_min_labelled": "[embedded server] labelled answers per version before online "
                            "accuracy is judged (0: off)",
    "rollout_max_accuracy_drop": "[embedded server] how much less accurate than the champion "
                                 "the candidate may be",
    "rollout_confidence": "[embedded server] how sure the one-sided test must be that the "
                          "drop is larger, to fail",
}


def parser() -> argparse.ArgumentParser:
    """One flag per `ServerOptions` field, with its default, so the two cannot drift."""
    p = argparse.ArgumentParser(
        prog="python -m serving",
        description="Embedded TensorFlow Serving-compatible model server (REST and gRPC).")
    defaults = ServerOptions()
    for field in dataclasses.fields(ServerOptions):
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            p.add_argument(f"--{field.name}", type=_bool, nargs="?", const=True,
                           default=default, metavar="BOOL", help=_HELP[field.name])
        else:
            p.add_argument(f"--{field.name}", type=type(default), default=default,
                           help=f"{_HELP[field.name]} (default: {default!r})")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="show TensorFlow's and the server's debug logs")
    return p


def parse(argv: Optional[Sequence[str]] = None) -> tuple[ServerOptions, bool]:
    """(options, verbose) from the command line; argparse exits 2 with a usage message."""
    from serving.errors import ServingError

    flag_parser = parser()
    args = vars(flag_parser.parse_args(argv))
    verbose = args.pop("verbose")
    try:
        return ServerOptions(**args), verbose
    except ServingError as err:
        flag_parser.error(err.message)
