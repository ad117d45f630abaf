"""Process set-up shared by every entry point that is about to import TFX."""
from __future__ import annotations

from pipeline.runtime import lazy_imports, quiet
from serving.process import exit_now  # noqa: F401 (re-exported)


def prepare(verbose: bool = False) -> None:
    """Quiet library logs (unless verbose) and defer imports a local run never uses."""
    quiet.configure(verbose)
    lazy_imports.defer_unused_cloud_clients()
