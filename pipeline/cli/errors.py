"""Where every expected failure of an `mlops` command becomes one line and an exit code.

Each command group of `mlops` is a `CommandGroup`: a command raises the module's own error
(a `pipeline.errors.UserError`, or one of serving's operator-side errors) and this class,
not the command, prints `error: <message>` on stderr and exits with the error's code
(1: the action failed; 2: the command line or config is wrong). An exception that is not
a user's mistake keeps its traceback: it is a bug to report.
"""
from __future__ import annotations

from typing import Any, Optional

import typer
from typer.core import TyperGroup

from pipeline.errors import UserError


def user_error(err: BaseException) -> Optional[tuple[str, int]]:
    """(message, exit code) when `err` is a mistake a person can fix, else None.

    `serving/` imports nothing of `pipeline/`, so its errors do not derive from
    `UserError`; the ones its operator-side modules raise for a person are named here.
    """
    if isinstance(err, UserError):
        return str(err), err.exit_code
    from serving.client import ClientError
    from serving.errors import ServingError
    from serving.operations import OperationError

    if isinstance(err, ServingError):
        return err.message, UserError.exit_code
    if isinstance(err, (ClientError, OperationError)):
        return str(err), UserError.exit_code
    return None


class CommandGroup(TyperGroup):
    """A typer command group that reports user errors as one line (see the module doc)."""

    def invoke(self, ctx: Any) -> Any:
        """Runs the command; a user's mistake becomes `error: <message>` on stderr.

        Raises:
            typer.Exit: after printing the line, with the error's exit code (1, or 2 for
                a usage or config error).
            Exception: anything that is not a user's mistake, unchanged, with its
                traceback: a bug to report.
        """
        try:
            return super().invoke(ctx)
        except Exception as err:  # noqa: BLE001 (re-raised unless it is a user's mistake)
            known = user_error(err)
            if known is None:
                raise
            message, code = known
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None
