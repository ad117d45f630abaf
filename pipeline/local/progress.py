"""What a local run shows while it runs: which component, for how long.

On a terminal, one transient line (spinner, component, its elapsed time, how many are
done) that the summary replaces; in a log (output not a terminal), a plain line when each
component starts and ends, with its time, so a CI log tells where a run spends its time
or where it stopped.
"""
from __future__ import annotations

import time
from typing import Optional

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

STARTING = "starting (importing TensorFlow and TFX)"
ENDED = ("finished", "cached", "failed")


class RunProgress:
    """A node listener (`quiet.NodeListener`): call it with (component, event)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live: Optional[Progress] = None
        if console.is_terminal:
            self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  TimeElapsedColumn(), console=console, transient=True)
        self._task = None
        self._started: dict[str, float] = {}
        self._done = 0

    def __enter__(self) -> "RunProgress":
        if self._live is not None:
            self._live.start()
            self._task = self._live.add_task(STARTING)
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, node: str, event: str) -> None:
        if event == "running":
            self._started[node] = time.monotonic()
            if self._live is not None:
                self._live.reset(self._task, description=f"running [bold]{node}[/] "
                                                         f"({self._done} components done)")
            else:
                self._console.print(f"{node}: running", highlight=False)
        elif event in ENDED and node in self._started:  # the first end a node reports
            self._done += 1
            seconds = time.monotonic() - self._started.pop(node)
            if self._live is None:
                self._console.print(f"{node}: {event} ({seconds:.1f}s)", highlight=False)
