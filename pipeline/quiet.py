"""Keeps TensorFlow, absl, Beam and Google client noise out of normal output.

People read progress and a summary; the libraries' INFO logs, CUDA/oneDNN lines and
FutureWarnings are shown only with `--verbose`. `configure` must run before TensorFlow is
imported, because TF reads its C++ log level once, at import.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from typing import Callable, Iterator, Optional

_NOISY_LOGGERS = ("absl", "apache_beam", "tensorflow", "tfx", "ml_metadata", "google",
                  "tensorflow_transform", "tensorflow_model_analysis", "tensorflow_data_validation",
                  "urllib3", "h5py", "numexpr")
_NODE_EVENTS = (
    (re.compile(r"^Component (\S+) is running\.$"), "running"),
    (re.compile(r"^Component (\S+) is finished\.$"), "finished"),
)
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")


def configure(verbose: bool = False) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFX 1.16 models are Keras 2
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        logging.getLogger().setLevel(logging.INFO)
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # reaches Beam's worker processes too
    warnings.filterwarnings("ignore")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
        absl_logging.set_stderrthreshold(absl_logging.ERROR)
    except ImportError:
        pass


class _NodeEventHandler(logging.Handler):
    """Turns the local runner's log lines into (node_id, event) calls."""

    def __init__(self, listener: Callable[[str, str], None]):
        super().__init__(level=logging.INFO)
        self._listener = listener
        self._current: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for pattern, event in _NODE_EVENTS:
            match = pattern.match(message)
            if match:
                self._current = match.group(1) if event == "running" else None
                self._listener(match.group(1), event)
                return
        if self._current and _CACHED.match(message):
            self._listener(self._current, "cached")


@contextlib.contextmanager
def node_events(listener: Optional[Callable[[str, str], None]]) -> Iterator[None]:
    """While active, calls `listener(node_id, event)` as components start and finish.

    The runner logs through absl at INFO; its logger is let through to this handler only,
    so listening does not make the output noisy.
    """
    if listener is None:
        yield
        return
    handler = _NodeEventHandler(listener)
    absl_logger = logging.getLogger("absl")
    previous, previous_propagate = absl_logger.level, absl_logger.propagate
    absl_logger.addHandler(handler)
    quiet_mode = absl_logger.getEffectiveLevel() > logging.INFO
    if quiet_mode:  # let INFO through to the listener only, not to any console handler
        absl_logger.setLevel(logging.INFO)
        absl_logger.propagate = False
    try:
        yield
    finally:
        absl_logger.removeHandler(handler)
        absl_logger.setLevel(previous)
        absl_logger.propagate = previous_propagate


def is_tfx_cli_compile() -> bool:
    """True while `tfx pipeline create` executes the DSL file with a patched runner."""
    from tfx import v1 as tfx

    return hasattr(tfx.orchestration.LocalDagRunner.run, "__wrapped__")
