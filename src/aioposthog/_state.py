"""The lifecycle state of a client."""

from __future__ import annotations

import enum

__all__ = ["ClientState"]


class ClientState(enum.Enum):
    """Where a client is in its life: it opens once and closes once."""

    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSING = "closing"
    CLOSED = "closed"
