"""The durable spool: events that could not be delivered, written to disk for the next start.

One file per write, named ``spool-<mode>-<time>-<pid>.jsonl``, one event per line as
``<uuid>\\t<encoded event>``. Files are written to a temporary name and renamed, so a crash
never leaves a half-written file that a later start would read. A start loads every file of
its capture mode and deletes it once its events are back in the queue: delivery stays
at-least-once, and PostHog deduplicates on the uuid.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ._queue import Item

__all__ = ["Spool"]

logger = logging.getLogger("aioposthog")


class Spool:
    """A directory of undelivered events for one capture mode (``v0`` or ``v1``)."""

    def __init__(self, directory: Path, mode: str) -> None:
        self.directory = directory
        self.mode = mode

    def write(self, items: list[Item]) -> int:
        """Write ``items`` to a new spool file; return how many were written."""
        if not items:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"spool-{self.mode}-{time.time_ns()}-{os.getpid()}.jsonl"
        final = self.directory / name
        partial = self.directory / (name + ".part")
        with partial.open("wb") as handle:
            for uuid, data in items:
                handle.write(uuid.encode() + b"\t" + data + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(final)
        return len(items)

    def files(self) -> list[Path]:
        """The complete spool files of this mode, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"spool-{self.mode}-*.jsonl"))

    @staticmethod
    def read(path: Path) -> list[Item]:
        """The events of one spool file; malformed lines are skipped and logged."""
        items: list[Item] = []
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                uuid, sep, data = line.rstrip(b"\n").partition(b"\t")
                if not sep or not data.startswith(b"{"):
                    logger.warning("aioposthog: skipping malformed line %d of %s", number, path)
                    continue
                items.append((uuid.decode(), data))
        return items
