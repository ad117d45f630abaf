"""Process hygiene shared by every entry point that imports TensorFlow: the server's and
the pipeline's (`pipeline/runtime/quiet.py`, `pipeline/runtime/process.py` re-export these)."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import NoReturn

# prometheus_client's multiprocess mode: the folder its values are written to, read once at
# its import (the REST workers' shared metrics, `serving.metrics`).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_NOISY_LOGGERS = ("absl", "apache_beam", "tensorflow", "tfx", "ml_metadata", "google",
                  "tensorflow_transform", "tensorflow_model_analysis", "tensorflow_data_validation",
                  "urllib3", "h5py", "numexpr")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which containers and `taskset`
    narrow (`os.cpu_count()` counts the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_keras_2() -> None:
    """`tf.keras` as Keras 2 (`TF_USE_LEGACY_KERAS=1`, unless set), which TFX 1.16's
    components and this project's models use. TensorFlow reads it once, when imported, so
    every process sets it first; a Kubeflow pod's environment (the image's) does not, and
    there `tf.keras` was Keras 3 in the executors (tf.Transform's import sets the variable
    after TensorFlow has chosen)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def quiet_libraries(verbose: bool = False) -> None:
    """Keeps TensorFlow, absl, Beam and Google client noise (INFO logs, CUDA/oneDNN lines,
    FutureWarnings) out of normal output unless `verbose`; Keras 2 (`use_keras_2`). Run it
    before TensorFlow is imported: TF reads its C++ log level once, at import."""
    use_keras_2()
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


def exit_now(code: int) -> NoReturn:
    """Leaves without Python's interpreter teardown, once the work is done and flushed.

    TensorFlow 2.16 does not survive teardown cleanly: it prints "Exception ignored in
    AtomicFunction.__del__" tracebacks while modules are torn down, and a server process
    that had just collected an unloaded model aborted (SIGABRT, "exception not rethrown")
    after a clean stop. Nothing is left to release by then, so skip the teardown.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more to say
            pass
    os._exit(code)
