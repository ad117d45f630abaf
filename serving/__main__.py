"""``python -m serving``: the embedded server, with tensorflow_model_server's flags."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from typing import Iterator


def main(argv=None) -> int:
    """Runs the embedded server until interrupted; returns the exit code (2: a bad flag or
    file, 1: a port cannot be listened on), so errors are one line, not a traceback."""
    from serving import flags
    from serving.errors import ServingError
    from serving.process import quiet_libraries

    options, verbose = flags.parse(argv)
    try:
        options.check_files()  # before TensorFlow is imported
    except ServingError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    quiet_libraries(verbose)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    with _shared_metrics(options.rest_api_workers > 1):
        from serving.server import run

        return run(options)


@contextlib.contextmanager
def _shared_metrics(needed: bool) -> Iterator[None]:
    """With REST workers: a new folder for prometheus_client's multiprocess mode, named in
    the environment before anything imports prometheus_client (it picks its mode once, at
    import; the workers inherit the variable), removed when the server stops."""
    if not needed:
        yield
        return
    from serving.process import MULTIPROC_ENV  # (serving.metrics would import the client)

    folder = tempfile.mkdtemp(prefix="serving-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    from serving.process import exit_now

    exit_now(main())
