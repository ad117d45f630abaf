"""The one base class of the mistakes a person can put right.

A wrong config key, a version that does not exist, a request log that is empty, a KFP
server that refuses a token: each module raises its own subclass with a message that names
the key, file or value to fix, and `mlops` turns every one of them into one `error:` line
and `exit_code` in one place (`pipeline/cli/errors.py`), never a traceback. Anything else
that escapes is a bug, and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake a person can fix, said in one message (exit code 1)."""

    exit_code = 1


class UsageError(UserError):
    """The command line or the configuration is wrong (exit code 2)."""

    exit_code = 2
