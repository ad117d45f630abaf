"""``python -m serving``: the embedded server, with tensorflow_model_server's flags."""
from __future__ import annotations

import logging
import sys


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
    from serving import event_loop
    from serving.server import serve_forever

    try:
        event_loop.run(serve_forever(options))
    except ServingError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot listen: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    from serving.process import exit_now

    exit_now(main())
