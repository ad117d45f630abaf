"""The server's options: tensorflow_model_server's flags, kept free of heavy imports.

Parsing flags and reading config files must not import TensorFlow, so that log levels are
set before it loads and a wrong flag is reported in a fraction of a second.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from serving import config_files, process
from serving.config_files import ModelServerConfig
from serving.errors import invalid_argument
from serving.rollout.policy import RolloutPolicy, optional_policy

_ROLLOUT = RolloutPolicy()  # the flags' defaults are the policy's
_SESSION_THREAD_FLAGS = ("tensorflow_session_parallelism", "tensorflow_intra_op_parallelism",
                         "tensorflow_inter_op_parallelism")
MAX_REST_API_WORKERS = 64  # each loads every model: more would be a typo, not a plan


@dataclasses.dataclass
class ServerOptions:
    """tensorflow_model_server's flags (same names and defaults) plus some of our own."""

    port: int = 8500
    rest_api_port: int = 8501
    rest_api_timeout_in_ms: int = 30000
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    ssl_config_file: str = ""  # SSLConfig text proto: gRPC over TLS
    # The model sessions' thread pools, TF Serving's precedence (0: auto, `session_threads`).
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    # Ours: safe defaults for a laptop (TF Serving listens on every interface).
    host: str = "127.0.0.1"
    max_request_bytes: int = 64 * 1024 * 1024
    num_model_threads: int = 4
    # Ours: the REST port's protection when it faces a network (0: off).
    rest_read_timeout_seconds: float = 30.0
    rest_idle_timeout_seconds: float = 60.0
    rest_max_connections: int = 1024
    rest_ssl_config_file: str = ""  # SSLConfig text proto too: HTTPS on the REST port
    # Ours: processes answering the REST port (serving.workers); each loads every model.
    rest_api_workers: int = 1
    # Ours: a sample of the requests as tf.Examples, for `mlops skew` (0: off).
    request_log_sample_rate: float = 0.0
    request_log_dir: str = ""
    # Ours: every push rolled out as a canary that live checks promote or abort
    # (serving.rollout; needs --model_config_file, the models.config it edits).
    rollout: bool = False
    rollout_mode: str = _ROLLOUT.mode
    rollout_steps: str = ",".join(f"{step:g}" for step in _ROLLOUT.steps)
    rollout_interval_seconds: float = _ROLLOUT.interval_seconds
    rollout_threshold: int = _ROLLOUT.threshold
    rollout_min_requests: int = _ROLLOUT.min_requests
    rollout_max_error_rate: float = _ROLLOUT.max_error_rate
    rollout_max_p99_ms: float = _ROLLOUT.max_p99_ms
    rollout_max_p99_ratio: float = _ROLLOUT.max_p99_ratio
    rollout_p99_slack_ms: float = _ROLLOUT.p99_slack_ms
    rollout_max_divergence: float = _ROLLOUT.max_divergence
    rollout_min_labelled: int = _ROLLOUT.min_labelled
    rollout_max_accuracy_drop: float = _ROLLOUT.max_accuracy_drop
    rollout_confidence: float = _ROLLOUT.confidence

    def __post_init__(self) -> None:
        for name in ("rest_read_timeout_seconds", "rest_idle_timeout_seconds",
                     "rest_max_connections", "max_request_bytes", *_SESSION_THREAD_FLAGS):
            if getattr(self, name) < 0:
                raise invalid_argument(f"--{name} must not be negative")
        if all(getattr(self, name) > 0 for name in _SESSION_THREAD_FLAGS):
            raise invalid_argument(  # tensorflow_model_server's own refusal (server.cc)
                "Either configure --tensorflow_session_parallelism or "
                "(--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism) "
                "separately. You cannot configure all.")
        if not 1 <= self.rest_api_workers <= MAX_REST_API_WORKERS:
            raise invalid_argument(f"--rest_api_workers must be between 1 and "
                                   f"{MAX_REST_API_WORKERS}, not {self.rest_api_workers}")
        if self.rest_api_workers > 1 and self.rollout:
            raise invalid_argument("--rollout needs --rest_api_workers=1: a rollout's "
                                   "measurements and decisions live in one process")
        if not 0 <= self.request_log_sample_rate <= 1:
            raise invalid_argument("--request_log_sample_rate must be between 0 and 1")
        if self.request_log_sample_rate and not self.request_log_dir:
            raise invalid_argument("--request_log_sample_rate needs --request_log_dir")
        if self.rollout_policy() is not None and \
                os.path.basename(self.model_config_file) != "models.config":
            raise invalid_argument("--rollout needs --model_config_file naming a serving "
                                   "directory's models.config (the file the rollout edits, "
                                   "as `mlops canary` does)")

    def session_threads(self) -> tuple[int, int]:
        """(intra-op, inter-op) threads of this process's model sessions; 0 leaves the
        number to TensorFlow (one per core).

        tensorflow_model_server's precedence (`model_servers/server.cc`): the intra- and
        inter-op flags when either is set (the other may stay 0), else
        --tensorflow_session_parallelism for both. When all three are 0 and the REST port
        has several processes, each gets the cores it may use (`usable_cores`: its CPU
        affinity, which containers narrow) divided among them (at least 1): N
        processes with TensorFlow's default pools would run N threads per core, which
        fight the processes' event loops for the cores (bench/serving; figures in
        docs/performance.md).
        """
        intra, inter, session = (self.tensorflow_intra_op_parallelism,
                                 self.tensorflow_inter_op_parallelism,
                                 self.tensorflow_session_parallelism)
        if intra > 0 or inter > 0:
            return intra, inter
        if session > 0 or self.rest_api_workers == 1:
            return session, session
        share = max(1, process.usable_cores() // self.rest_api_workers)
        return share, share

    def rollout_policy(self) -> Optional[RolloutPolicy]:
        """The rollout's policy from the `--rollout*` flags; None when `--rollout` is off.

        Raises:
            ServingError: INVALID_ARGUMENT naming the flag whose value is impossible.
        """
        return optional_policy(dataclasses.asdict(self))

    def check_files(self) -> None:
        """Reads every file the flags name (the models.config, the TLS configs) as the
        server will: `python -m serving` calls this before importing TensorFlow, so that a
        missing flag or a bad file is said in a fraction of a second, not after seconds.

        Raises:
            ServingError: INVALID_ARGUMENT, as `model_server_config` and `serving.tls.read`.
        """
        from serving import tls

        self.model_server_config()
        for flag in ("ssl_config_file", "rest_ssl_config_file"):
            if getattr(self, flag):
                tls.read(getattr(self, flag), flag)

    def model_server_config(self) -> ModelServerConfig:
        """What to serve: the `--model_config_file`, else one model from `--model_name`
        and `--model_base_path` (made absolute), as tensorflow_model_server decides.

        Raises:
            ServingError: INVALID_ARGUMENT when neither flag is given, or the config file
                cannot be read or is not one tensorflow_model_server would accept.
        """
        if self.model_config_file:
            return config_files.read_model_server_config(self.model_config_file)
        if not self.model_base_path:
            raise invalid_argument("--model_base_path or --model_config_file is required")
        return config_files.single_model_config(self.model_name,
                                                os.path.abspath(self.model_base_path))
