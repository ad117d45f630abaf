"""The console `mlops` writes to: sentences stay whole when the output is a log.

Piped to a file or a CI log, rich wraps text at 80 columns, mid-sentence ("holds STRING
\\nvalues"), which breaks reading and grepping; here text is never wrapped, while tables
keep the console's width.
"""
from __future__ import annotations

from rich.console import Console


def log_console(**options) -> Console:
    """A rich Console that never wraps text (see above); `options` are Console's own."""
    return Console(soft_wrap=True, **options)
