"""Batch bodies are gzipped on the loop a group of events at a time, never built whole."""

from __future__ import annotations

import asyncio
import gzip
import json
import os

import pytest

from aioposthog._capture._encode import (
    COMPRESS_SLICE_BYTES,
    gzip_body,
    join_body,
    v0_envelope,
    v1_envelope,
)

from ._mock import LoopTurns

ENVELOPE = v0_envelope("phc_k", historical_migration=False, sent_at="2024-01-01T00:00:00+00:00")


def events(count: int, size: int = 600) -> list[bytes]:
    out = []
    for i in range(count):
        pad = os.urandom(size // 4).hex()[: max(0, size - 40)]
        out.append(json.dumps({"event": "e", "i": i, "pad": pad}).encode())
    return out


@pytest.mark.parametrize(
    "batch",
    [
        [],
        events(1),
        events(3),
        events(1_000),  # several groups
        events(2, size=COMPRESS_SLICE_BYTES * 2),  # each event larger than a group
        [b"{}"] * 5_000,
    ],
    ids=["empty", "one", "three", "thousand", "huge-events", "tiny-events"],
)
async def test_same_bytes_as_the_plain_body(batch: list[bytes]) -> None:
    out = await gzip_body(ENVELOPE, batch)
    assert out[:2] == b"\x1f\x8b"  # one gzip member, as Content-Encoding: gzip says
    assert gzip.decompress(out) == join_body(ENVELOPE, batch)
    parsed = json.loads(gzip.decompress(out))
    assert len(parsed["batch"]) == len(batch)


def test_envelopes() -> None:
    batch = events(2)
    v0 = v0_envelope("phc_k", historical_migration=True, sent_at="t")
    assert json.loads(join_body(v0, batch)) == {
        "api_key": "phc_k",
        "historical_migration": True,
        "sent_at": "t",
        "batch": [json.loads(e) for e in batch],
    }
    v1 = json.loads(join_body(v1_envelope(historical_migration=False, created_at="t"), batch))
    assert v1 == {"created_at": "t", "batch": [json.loads(e) for e in batch]}


async def test_other_tasks_run_between_groups() -> None:
    batch = events(5_000)  # ~3 MB: about a dozen groups
    async with LoopTurns() as turns:
        out = await gzip_body(ENVELOPE, batch)
    groups = len(join_body(ENVELOPE, batch)) // COMPRESS_SLICE_BYTES
    assert turns.count >= groups - 1  # the loop turned between groups
    assert gzip.decompress(out) == join_body(ENVELOPE, batch)


async def test_a_small_body_is_one_step() -> None:
    loop = asyncio.get_running_loop()
    marker: list[str] = []
    loop.call_soon(marker.append, "ran")
    out = await gzip_body(ENVELOPE, events(10))
    assert marker == []  # no turn of the loop
    assert json.loads(gzip.decompress(out))["api_key"] == "phc_k"
