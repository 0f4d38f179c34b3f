"""A scriptable `httpx.MockTransport` that records what the client sent, decoded."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from aioposthog import RetryPolicy

Reply = httpx.Response | type[Exception] | Exception | Callable[[httpx.Request], httpx.Response]


async def no_sleep(_: float) -> None:
    """A clock that never waits, for retry tests."""


@dataclass
class Sleeps:
    """A fake sleep that records the waits it was asked for."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def fast_retry(
    attempts: int = 4, sleep: Callable[[float], Awaitable[None]] = no_sleep
) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, base=0.0, cap=0.0, sleep=sleep)


@dataclass
class Sent:
    """One request as the server would read it."""

    method: str
    path: str
    headers: httpx.Headers
    body: dict[str, Any]
    raw: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        batch = self.body.get("batch", [])
        assert isinstance(batch, list)
        return batch


class MockPostHog:
    """Answers 200 unless a reply was queued with `then()`; records every request."""

    def __init__(self) -> None:
        self.requests: list[Sent] = []
        self.replies: deque[Reply] = deque()
        self.default: Callable[[httpx.Request], httpx.Response] = self._ok

    @staticmethod
    def _ok(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/i/v1/"):
            body = _decode(request)
            results = {e["uuid"]: {"result": "ok"} for e in body.get("batch", [])}
            return httpx.Response(200, json={"results": results})
        return httpx.Response(200, json={"status": 1})

    def then(self, *replies: Reply) -> MockPostHog:
        self.replies.extend(replies)
        return self

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = _decode(request) if request.content else {}
        self.requests.append(
            Sent(request.method, request.url.path, request.headers, body, request.content)
        )
        if self.replies:
            reply = self.replies.popleft()
            if isinstance(reply, httpx.Response):
                return reply
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, type):
                raise reply("scripted failure")
            return reply(request)
        return self.default(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for sent in self.requests for event in sent.events]


def _decode(request: httpx.Request) -> dict[str, Any]:
    raw = request.content
    if request.headers.get("content-encoding") == "gzip":
        raw = gzip.decompress(raw)
    decoded = json.loads(raw)
    assert isinstance(decoded, dict)
    return decoded


class LoopTurns:
    """Counts the turns of the event loop that another task gets while the block runs.

    >>> async with LoopTurns() as turns: ...   # then turns.count
    """

    def __init__(self) -> None:
        self.count = 0
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._spin())
        await asyncio.sleep(0)  # the task is running
        self.count = 0
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        final = self.count
        self._done.set()
        assert self._task is not None
        await self._task
        self.count = final

    async def _spin(self) -> None:
        while not self._done.is_set():
            self.count += 1
            await asyncio.sleep(0)
