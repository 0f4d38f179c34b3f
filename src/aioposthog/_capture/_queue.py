"""The bounded in-memory queue of encoded events, with its overflow policy.

It holds ``(uuid, encoded_event)`` pairs, bounded both by count and by bytes. Only the event
loop touches it, so it needs no lock: `offer()` is a few integer operations and a deque
append, and it wakes the batcher only when a batch window opens or a batch fills.

Sequence numbers let `flush()` wait for exactly the events queued before it: ``tail_seq``
counts events ever queued, ``head_seq`` those that have left the queue (cut into a batch or
dropped), so the queue holds events ``head_seq .. tail_seq - 1``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from operator import itemgetter
from typing import Literal

from .._stats import StatsRecorder

__all__ = ["EventQueue", "Item"]

Item = tuple[str, bytes]
Overflow = Literal["drop_newest", "drop_oldest", "block"]


class EventQueue:
    """A FIFO of encoded events bounded by ``max_events`` and ``max_bytes``."""

    __slots__ = (
        "_blocked",
        "_flush_at",
        "_high_water",
        "_items",
        "_max_bytes",
        "_max_events",
        "_room",
        "_stats",
        "_wake",
        "head_seq",
        "nbytes",
        "overflow",
        "tail_seq",
        "window_start",
    )

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        overflow: Overflow,
        flush_at: int,
        stats: StatsRecorder,
    ) -> None:
        self._items: deque[Item] = deque()
        self._max_events = max_events
        self._high_water = max_events // 2
        self._max_bytes = max_bytes
        self._flush_at = flush_at
        self._stats = stats
        self.overflow = overflow
        self.nbytes = 0
        self.head_seq = 0
        self.tail_seq = 0
        self.window_start = 0.0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._blocked = 0

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self, size: int) -> bool:
        """Whether an event of ``size`` bytes fits now."""
        return len(self._items) < self._max_events and self.nbytes + size <= self._max_bytes

    def offer(self, item: Item) -> bool:
        """Queue an event without waiting; apply the overflow policy when full.

        Returns False when the event itself was dropped (``drop_newest``, or ``block``
        called without room, which the caller avoids by awaiting `wait_for_room` first).
        """
        items = self._items
        size = len(item[1])
        if len(items) >= self._max_events or self.nbytes + size > self._max_bytes:
            if self.overflow != "drop_oldest" or not items:
                self._stats.drop("queue_full")
                return False
            while items and (
                len(items) >= self._max_events or self.nbytes + size > self._max_bytes
            ):
                _, old = items.popleft()
                self.nbytes -= len(old)
                self.head_seq += 1
                self._stats.drop("queue_full")
        self._append(item, size)
        return True

    def put_nowait(self, item: Item) -> bool:
        """Queue an event if the queue is below its high-water mark (half full) and has byte
        room; else change nothing and return False (the caller takes the `offer` path)."""
        size = len(item[1])
        if len(self._items) >= self._high_water or self.nbytes + size > self._max_bytes:
            return False
        self._append(item, size)
        return True

    def _append(self, item: Item, size: int) -> None:
        items = self._items
        if not items:
            self.window_start = time.monotonic()
            items.append(item)
            self._wake.set()
        else:
            items.append(item)
            if len(items) == self._flush_at:
                self._wake.set()
        self.nbytes += size
        self.tail_seq += 1
        self._stats.enqueued += 1

    async def wait_for_room(self, size: int) -> None:
        """Wait until an event of ``size`` bytes fits (the ``block`` policy)."""
        self._blocked += 1
        try:
            while not self.has_room(size):
                self._room.clear()
                await self._room.wait()
        finally:
            self._blocked -= 1

    def cut(self, max_events: int, max_bytes: int) -> tuple[int, list[Item]]:
        """Take the next batch from the head: at most ``max_events`` and ``max_bytes``.

        Always takes at least one event, so an event is never stuck behind the byte limit.
        Returns the sequence number of the batch's first event and the batch.
        """
        items = self._items
        start = self.head_seq
        count = min(max_events, len(items))
        if self.nbytes + count <= max_bytes:
            # The common case: all that is queued fits (+1 per event for its comma), so the
            # next `count` events are taken without weighing each one.
            pop = items.popleft
            batch = [pop() for _ in range(count)]
            taken = sum(map(len, map(itemgetter(1), batch)))
        else:
            batch = []
            taken = 0
            while items and len(batch) < max_events:
                nxt = len(items[0][1])
                if batch and taken + len(batch) + nxt + 1 > max_bytes:
                    break
                batch.append(items.popleft())
                taken += nxt
        self.nbytes -= taken
        self.head_seq += len(batch)
        self.window_start = time.monotonic()
        if self._blocked:
            self._room.set()
        return start, batch

    def take_all(self) -> list[Item]:
        """Empty the queue (at shutdown), returning what it held."""
        batch = list(self._items)
        self._items.clear()
        self.nbytes = 0
        self.head_seq = self.tail_seq
        if self._blocked:
            self._room.set()
        return batch

    def wake(self) -> None:
        """Wake the batcher (a flush was asked for, or shutdown began)."""
        self._wake.set()

    async def wait_wake(self, timeout: float | None = None) -> None:
        """Sleep until `offer` or `wake` signals, or ``timeout`` seconds pass."""
        self._wake.clear()
        if timeout is None:
            await self._wake.wait()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
