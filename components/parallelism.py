"""How many threads an in-process executor path may use: from the data size and the machine.

The in-process paths (`beam_runner`) run where Beam's direct runner would have run the work
in this one process anyway. Where the heavy part of their work happens in C++ that releases
the GIL (gzip, tf.Example encoding and decoding, TensorFlow ops), a second thread uses a
second core. Threads cost a start-up and some memory per batch in flight, which small data
does not pay back, so "auto" starts them only above `AUTO_MIN_BYTES` of input.

The setting travels as a Beam option (`--in_process_threads`), because the Beam arguments
are what TFX hands every Beam component on every runner; a distributing runner ignores it
(its workers are its own business). `pipeline.threads` in the config sets it.
`ordered_map` is the one way those paths spread their batches over the threads.
"""
from __future__ import annotations

import collections
import concurrent.futures
from typing import Any, Callable, Iterable, Iterator

from apache_beam.options import pipeline_options

from serving.process import usable_cores

AUTO = "auto"
OPTION = "in_process_threads"
# Below this much input (on disk, compressed as stored) one thread finishes before more
# would have paid for themselves: the bundled 15,000 rows are about 2 MB of gzipped Examples.
AUTO_MIN_BYTES = 32 << 20
# Past this many threads the Python between the C++ calls, which holds the GIL, is the limit.
AUTO_MAX_THREADS = 4


class InProcessOptions(pipeline_options.PipelineOptions):
    """Beam options of this project's in-process executor paths (Beam itself ignores them).

    Declared as a PipelineOptions subclass so that Beam parses the flag instead of warning
    that it discards an unknown one.
    """

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            f"--{OPTION}", default=AUTO,
            help="threads of the in-process executor paths: a number, or 'auto' (one for "
                 "small data, else the cores this process may use, at most "
                 f"{AUTO_MAX_THREADS})")


def parse_threads(value: str) -> int | None:
    """`value` as a thread count, None for "auto"; a clear ValueError for anything else.

    Raises:
        ValueError: `value` is neither "auto" nor a positive integer (the message names
            the option).
    """
    if str(value).strip().lower() == AUTO:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"--{OPTION}={value}: expected a positive number or '{AUTO}'")
    return threads


def threads_for(beam_pipeline_args: list[str] | None, input_bytes: int) -> int:
    """The threads an in-process path should use on `input_bytes` of input.

    Args:
      beam_pipeline_args: the component's Beam arguments (`--in_process_threads`).
      input_bytes: the size of what the path reads, as stored.

    Returns:
      The configured number, or for "auto": 1 below `AUTO_MIN_BYTES`, else the usable
      cores up to `AUTO_MAX_THREADS`.

    Raises:
      ValueError: the option is neither a positive number nor "auto".
    """
    options = pipeline_options.PipelineOptions(beam_pipeline_args or [])
    configured = parse_threads(options.view_as(InProcessOptions).in_process_threads)
    if configured is not None:
        return configured
    if input_bytes < AUTO_MIN_BYTES:
        return 1
    return max(1, min(usable_cores(), AUTO_MAX_THREADS))


def stored_bytes(patterns: list[str]) -> int:
    """The total size of the files matching `patterns` (paths or globs) on any Beam file
    system; what cannot be matched counts as 0, since this only sizes a choice."""
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    total = 0
    for pattern in patterns:
        try:
            (result,) = FileSystems.match([pattern])
        except (BeamIOError, OSError, ValueError):
            continue
        total += sum(metadata.size_in_bytes for metadata in result.metadata_list)
    return total


def ordered_map(function: Callable[..., Any], arguments: Iterable[tuple], threads: int,
                thread_name: str) -> Iterator[Any]:
    """``function(*args)`` for each of ``arguments``, in their order. With ``threads`` above
    1, that many calls run at once besides the result being handed out, so memory stays a
    few items whatever the input's size; else every call runs in the caller's thread.
    ``arguments`` is always pulled in the caller's thread."""
    if threads <= 1:
        for args in arguments:
            yield function(*args)
        return
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=thread_name) as pool:
        pending: collections.deque = collections.deque()
        for args in arguments:
            pending.append(pool.submit(function, *args))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
