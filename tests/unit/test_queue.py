"""EventQueue.cut: batches by count and by bytes, with the sequence numbers flush relies on."""

from __future__ import annotations

import pytest

from aioposthog._capture._queue import EventQueue
from aioposthog._stats import StatsRecorder


def queue_of(sizes: list[int]) -> EventQueue:
    queue = EventQueue(
        max_events=1_000,
        max_bytes=10**9,
        overflow="drop_newest",
        flush_at=100,
        stats=StatsRecorder(),
    )
    for i, size in enumerate(sizes):
        assert queue.offer((f"u{i}", b"x" * size))
    return queue


@pytest.mark.parametrize(
    ("sizes", "max_events", "max_bytes", "expected"),
    [
        ([10] * 5, 3, 1_000, 3),  # by count, everything fits (the fast path)
        ([10] * 5, 10, 1_000, 5),  # the whole queue
        ([10] * 5, 10, 33, 3),  # by bytes: 3 events + 3 commas = 33
        ([10] * 5, 10, 32, 2),
        ([50, 1, 1], 10, 20, 1),  # a first event over the limit still goes, alone
        ([1, 50, 1], 10, 20, 1),
    ],
)
def test_cut(sizes: list[int], max_events: int, max_bytes: int, expected: int) -> None:
    queue = queue_of(sizes)
    start, batch = queue.cut(max_events, max_bytes)
    assert start == 0
    assert [uuid for uuid, _ in batch] == [f"u{i}" for i in range(expected)]
    assert queue.head_seq == expected and queue.tail_seq == len(sizes)
    assert queue.nbytes == sum(sizes[expected:])
    assert len(queue) == len(sizes) - expected
    start, rest = queue.cut(1_000, 10**9)
    assert start == expected and len(rest) == len(sizes) - expected and queue.nbytes == 0
