"""What LocalPostHog keeps of the traffic it received, shared safely between two threads.

The server thread is the only writer; test code in any thread reads. Every write and every read
goes through one `threading.Lock`, and readers get copies, so a test never sees a list growing
under its feet or a request record without the events it carried.

Accepted events are kept as the JSON bytes they arrived in and parsed again when read: a
benchmark sink holding a million parsed dicts would make every garbage collection of the whole
process (the client under test included) walk them, tripling the cost of each request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EventShape", "RequestInfo", "RequestRecord", "Store", "WaitTarget"]

WaitTarget = Literal["events", "requests"]
EventShape = Literal["batch", "list", "single"]
"""Where a body keeps its events: under "batch", as the top-level list, or as the body."""


@dataclass(slots=True)
class RequestInfo:
    """Facts a route handler learnt from a request, filled in while it parses the body.

    The server turns them into a `RequestRecord` once the answer is known, and stores
    `events` only if the answer is a 2xx.
    """

    token: str | None = None
    api_key: str | None = None
    event_count: int = 0
    """Events to store from this body (all of them, or those not in `skip_uuids`)."""
    shape: EventShape = "batch"
    skip_uuids: frozenset[str] | None = None
    historical_migration: bool | None = None
    sent_at: str | None = None
    created_at: str | None = None
    results: dict[str, str] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request LocalPostHog answered on a recorded route (capture and, later, flags/API).

    `event_count` counts the events that were stored from this request: 0 for an error, an
    injected fault, or v1 events answered `retry`/`drop`/`limited`. `status` is 0 when an
    injected fault dropped the connection without answering. `peer` is the client's
    "host:port" (one per connection, so equal peers mean a reused keep-alive connection).
    `body_size` is the size on the wire, `decoded_size` after decompression (the same when the
    body was never decoded, as for an injected fault).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    group: str | None
    status: int
    event_count: int
    compressed: bool
    content_encoding: str | None
    body_size: int
    decoded_size: int
    token: str | None
    api_key: str | None
    historical_migration: bool | None
    sent_at: str | None
    created_at: str | None
    results: dict[str, str] | None
    error: str | None
    fault: bool
    received_at: float
    peer: str

    @property
    def user_agent(self) -> str | None:
        """The `User-Agent` header, if sent."""
        return self.headers.get("user-agent")

    @property
    def sdk_info(self) -> str | None:
        """The v1 `PostHog-Sdk-Info` header, if sent."""
        return self.headers.get("posthog-sdk-info")

    @property
    def attempt(self) -> int | None:
        """The v1 `PostHog-Attempt` header as an int, if sent and numeric."""
        value = self.headers.get("posthog-attempt")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def request_id(self) -> str | None:
        """The v1 `PostHog-Request-Id` header, if sent."""
        return self.headers.get("posthog-request-id")


@dataclass(frozen=True, slots=True)
class _StoredBody:
    body: bytes
    shape: EventShape
    skip_uuids: frozenset[str] | None

    def events(self) -> list[dict[str, Any]]:
        payload = json.loads(self.body)
        if self.shape == "single":
            return [payload]
        events: list[dict[str, Any]] = payload if self.shape == "list" else payload["batch"]
        skip = self.skip_uuids
        return events if not skip else [e for e in events if e.get("uuid") not in skip]


@dataclass(slots=True, eq=False)  # identity equality: two waiters may look alike
class _Waiter:
    target: WaitTarget
    count: int
    wake: Callable[[], None]


class Store:
    """Events and request records in arrival order, with waiters woken from the writer thread."""

    def __init__(self, *, keep_events: bool = True) -> None:
        self.keep_events = keep_events
        self._lock = threading.Lock()
        self._bodies: list[_StoredBody] = []
        self._event_count = 0
        self._requests: list[RequestRecord] = []
        self._batches = 0
        self._waiters: list[_Waiter] = []

    def commit(self, record: RequestRecord, body: bytes, info: RequestInfo | None) -> None:
        """Store one answered request and, if `info` is given, the events in `body`."""
        with self._lock:
            self._requests.append(record)
            if info is not None and info.event_count:
                if self.keep_events:
                    self._bodies.append(_StoredBody(body, info.shape, info.skip_uuids))
                self._event_count += info.event_count
                self._batches += 1
            ready = self._pop_ready_locked()
        # Wake outside the lock: a callback may hop to another thread's loop.
        for waiter in ready:
            waiter.wake()

    def clear(self) -> None:
        """Forget every event and request record."""
        with self._lock:
            self._bodies.clear()
            self._event_count = 0
            self._requests.clear()
            self._batches = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies = list(self._bodies)
        # Parse outside the lock: bodies are immutable and the server must not wait for us.
        return [event for stored in bodies for event in stored.events()]

    @property
    def event_count(self) -> int:
        with self._lock:
            return self._event_count

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def batches(self) -> int:
        with self._lock:
            return self._batches

    def counts(self) -> tuple[int, int, int]:
        """(events, requests, batches), read together."""
        with self._lock:
            return self._event_count, len(self._requests), self._batches

    def add_waiter(
        self, target: WaitTarget, count: int, wake: Callable[[], None]
    ) -> _Waiter | None:
        """Register `wake` for when `target` reaches `count`; None if it already has."""
        with self._lock:
            if self._count_locked(target) >= count:
                return None
            waiter = _Waiter(target, count, wake)
            self._waiters.append(waiter)
            return waiter

    def remove_waiter(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _count_locked(self, target: WaitTarget) -> int:
        return self._event_count if target == "events" else len(self._requests)

    def _pop_ready_locked(self) -> list[_Waiter]:
        if not self._waiters:
            return []
        ready = [w for w in self._waiters if self._count_locked(w.target) >= w.count]
        if ready:
            self._waiters = [w for w in self._waiters if w not in ready]
        return ready
