"""The event loop the embedded server runs on: uvloop's where it is installed.

uvloop (libuv under asyncio's interface, the loop uvicorn uses) runs the same code with
less work per callback, socket read and write: more REST throughput under load, one client
unchanged as the model call dominates it (measured by bench/serving --latency-only; see
docs/performance.md). grpc.aio runs on it unchanged. Where uvloop is missing (it has no
Windows build) the stock loop serves the same way.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - every supported platform has a wheel
    uvloop = None

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the kind the server runs on, for a caller that drives it itself."""
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def run(main: Awaitable[T]) -> T:
    """``asyncio.run``, on a loop of that kind."""
    return uvloop.run(main) if uvloop is not None else asyncio.run(main)
