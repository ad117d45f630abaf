"""Process set-up shared by every entry point that is about to import TFX."""
from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from pipeline import lazy_imports, quiet


def prepare(verbose: bool = False) -> None:
    """Quiet library logs (unless verbose) and defer imports a local run never uses."""
    quiet.configure(verbose)
    lazy_imports.defer_unused_cloud_clients()


def exit_now(code: int) -> NoReturn:
    """Leaves without Python's interpreter teardown, once the work is done and flushed.

    TensorFlow 2.16 does not survive teardown cleanly: it prints "Exception ignored in
    AtomicFunction.__del__" tracebacks while modules are torn down, and a server process
    that had just collected an unloaded model aborted (SIGABRT, "exception not rethrown")
    after a clean stop. Nothing is left to release by then, so skip the teardown.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
