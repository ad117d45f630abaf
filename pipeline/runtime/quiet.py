"""Keeps TensorFlow, absl, Beam and Google client noise out of normal output, and follows
a local run's components from TFX's own log lines.

People read progress and a summary; the libraries' INFO logs, CUDA/oneDNN lines and
FutureWarnings are shown only with `--verbose`. `configure` (shared with the server,
`serving/process.py`) must run before TensorFlow is imported, because TF reads its C++ log
level once, at import.
"""
from __future__ import annotations

import contextlib
import logging
import re
from typing import Callable, Iterator, Optional

from serving.process import quiet_libraries as configure  # noqa: F401 (re-exported)

NodeListener = Callable[[str, str], None]  # (node_id, "running" | "cached" | "finished" | "failed")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")


class _CacheHitHandler(logging.Handler):
    """Notices the launcher's "A cached execution N is used." line for the current node."""

    def __init__(self, listener: NodeListener):
        super().__init__(level=logging.INFO)
        self._listener = listener
        self.node: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.node and _CACHED.match(record.getMessage()):
            self._listener(self.node, "cached")


@contextlib.contextmanager
def node_events(listener: Optional[NodeListener]) -> Iterator[None]:
    """While active, calls `listener(node_id, event)` as the local runner moves on.

    Events: "running", "cached", "finished", "failed". The runner's launcher is wrapped
    for start and end; cache hits are only logged (through absl at INFO), so the absl
    logger is let through to a private handler, not to the console.
    """
    if listener is None:
        yield
        return
    from tfx.orchestration.portable import launcher as launcher_lib

    absl_logger = logging.getLogger("absl")
    saved = absl_logger.level, absl_logger.propagate
    cache_handler = _CacheHitHandler(listener)
    absl_logger.addHandler(cache_handler)
    quiet_mode = absl_logger.getEffectiveLevel() > logging.INFO
    original_launch = launcher_lib.Launcher.launch

    def launch(launcher):
        node = launcher._pipeline_node.node_info.id  # pylint: disable=protected-access
        if quiet_mode:  # components may have reset it; INFO reaches only our handler
            absl_logger.setLevel(logging.INFO)
            absl_logger.propagate = False
        cache_handler.node = node
        listener(node, "running")
        try:
            result = original_launch(launcher)
        except BaseException:
            listener(node, "failed")
            raise
        listener(node, "finished")
        return result

    launcher_lib.Launcher.launch = launch
    try:
        yield
    finally:
        launcher_lib.Launcher.launch = original_launch
        absl_logger.removeHandler(cache_handler)
        absl_logger.setLevel(saved[0])
        absl_logger.propagate = saved[1]


def is_tfx_cli_compile() -> bool:
    """True while `tfx pipeline create` executes the DSL file with a patched runner."""
    from tfx import v1 as tfx

    return hasattr(tfx.orchestration.LocalDagRunner.run, "__wrapped__")
