"""What the store raises: messages safe to show a client (no comment text, no file names)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened, read or written; the message is safe to show (no comment text)."""


class StoreConflict(StoreError):
    """A write collided with a concurrent one (a unique key already taken); nothing was written."""


class DuplicateEvent(StoreConflict):
    """A webhook event id that is already recorded: its first answer stands."""


def describe_error(exc: BaseException) -> str:
    """A short, safe description of a database error: the driver's message, never SQL parameters."""
    original = getattr(exc, "orig", None)
    if original is not None:
        detail = str(original.args[0]) if original.args else original.__class__.__name__
    else:  # not from the driver (a bad URL, a missing dialect): no statement, no parameters
        detail = str(exc)
    return detail.splitlines()[0][:200] if detail.strip() else exc.__class__.__name__
