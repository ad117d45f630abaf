"""Process set-up shared by every entry point that is about to import TFX."""
from __future__ import annotations

import os

from pipeline.runtime import filesystems, lazy_imports, quiet
from serving.process import use_keras_2
from serving.process import exit_now  # noqa: F401 (re-exported)


def prepare(verbose: bool = False) -> None:
    """Quiet library logs (unless verbose) and defer imports a local run never uses."""
    quiet.configure(verbose)
    before_tensorflow()


def before_tensorflow() -> None:
    """What must be in place before TensorFlow and TFX are imported, in every process that
    runs the pipeline's work (mlops, the pods' entrypoint, the warm parent of emulated
    pods): Keras 2 (`use_keras_2`), deferred imports of unused cloud clients, TensorFlow's
    GCS read buffer."""
    use_keras_2()
    lazy_imports.defer_unused_modules()
    filesystems.tune_gcs_reads(os.environ)
