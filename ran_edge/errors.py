"""Errors the user can act on.

Every failure a user can cause or fix is raised as one of these, with a message that
names the problem and the fix. The CLI prints the message alone (no traceback) and
exits with `exit_code`: 2 for bad usage or input, 1 for a stage that failed.
"""

from __future__ import annotations


class RanEdgeError(Exception):
    """Base class: a readable, actionable failure."""

    exit_code = 1


class UsageError(RanEdgeError):
    """The user asked for something that cannot exist (unknown target, bad shape, bad file)."""

    exit_code = 2


class StageError(RanEdgeError):
    """A pipeline stage (export, quantize, Vela) failed on otherwise valid input."""

    exit_code = 1
