"""Batch bodies are gzipped on the loop a slice at a time, letting other tasks run between."""

from __future__ import annotations

import asyncio
import gzip
import os

import pytest

from aioposthog._capture._encode import COMPRESS_SLICE_BYTES, gzip_sliced


@pytest.mark.parametrize(
    "size",
    [0, 1, COMPRESS_SLICE_BYTES - 1, COMPRESS_SLICE_BYTES, COMPRESS_SLICE_BYTES + 1, 1_300_000],
)
async def test_round_trips(size: int) -> None:
    # Half random (incompressible), half repeated: both kinds of deflate block.
    body = (os.urandom(size // 2) + b'{"event":"e"},' * size)[:size]
    out = await gzip_sliced(body)
    assert gzip.decompress(out) == body
    assert out[:2] == b"\x1f\x8b"  # a gzip member, as Content-Encoding: gzip says


async def test_other_tasks_run_between_slices() -> None:
    body = b'{"event":"order completed","properties":{"n":1}},' * 60_000  # ~3 MB: 12 slices
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    out = await gzip_sliced(body)
    done.set()
    await task
    slices = -(-len(body) // COMPRESS_SLICE_BYTES)
    assert ticks - before >= slices - 1  # the loop turned between slices
    assert gzip.decompress(out) == body


async def test_small_bodies_do_not_yield() -> None:
    body = b"x" * 1000
    loop = asyncio.get_running_loop()
    marker: list[str] = []
    loop.call_soon(marker.append, "ran")
    out = await gzip_sliced(body)
    assert marker == []  # one call, no turn of the loop
    assert gzip.decompress(out) == body
