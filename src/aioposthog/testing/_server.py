"""LocalPostHog: a PostHog-compatible capture server on 127.0.0.1, in its own thread."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ._capture import CaptureEndpoints
from ._flags import FlagsMixin
from ._http import HttpServer
from ._messages import DEFAULT_MAX_BODY_SIZE, Handler, HttpError, Request, Response, decode_body
from ._records import RequestRecord, Store, WaitTarget
from ._router import Router

__all__ = ["LocalPostHog", "V1ResultsHook"]

logger = logging.getLogger("aioposthog.testing")

V1ResultsHook = dict[str, str] | Callable[[str, dict[str, Any]], str | None]
"""`{uuid: result}` (each entry used once) or `(uuid, event) -> result | None`."""

_FAULT_BODIES = {
    429: {"type": "throttled_error", "code": "throttled", "detail": "Injected fault: throttled."},
    413: {"type": "validation_error", "code": "payload_too_large", "detail": "Injected fault."},
}
_STOP_TIMEOUT = 10.0
_COMPRESSED_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    headers: dict[str, str]
    body: bytes
    disconnect: bool

    def response(self) -> Response:
        return Response(self.status, self.body, dict(self.headers), disconnect=self.disconnect)


class LocalPostHog(FlagsMixin):
    """A PostHog-compatible HTTP server for tests, examples and benchmarks.

    It speaks PostHog's capture contract (v0 `/batch/`, `/i/v0/e/`, `/capture/`, `/e/` and v1
    `/i/v1/analytics/events`, gzip or deflate bodies) on 127.0.0.1, keeps every event it
    accepts in arrival order, and can inject faults. Its event loop runs in a dedicated daemon
    thread, so the client under test never shares a loop with it.

    Thread safety: the server thread is the only writer; `events`, `requests` and `batches`
    are read under a lock and return copies, so any thread may read them at any time.

    >>> with LocalPostHog() as server:
    ...     import httpx
    ...     r = httpx.post(f"{server.url}/batch/", json={
    ...         "api_key": "phc_test", "batch": [{"event": "e", "distinct_id": "u1"}]})
    ...     (r.json(), server.events[0]["event"])
    ({'status': 1}, 'e')
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        keep_events: bool = True,
        personal_api_key: str | None = None,
    ) -> None:
        """Configure (not start) a server.

        `port=0` picks a free port; `api_key` restricts capture to that project token (by
        default any non-empty token is accepted); `max_body_size` applies both on the wire and
        after decompression (PostHog's is 20 MiB); `keep_events=False` validates and counts
        events without keeping them (for long benchmarks: `events` stays empty).
        `personal_api_key` is the only Bearer key the flag definitions and remote config
        endpoints accept (by default any `phs_`/`phx_` key); see `set_flag_definitions`.
        """
        self.host = host
        self.max_body_size = max_body_size
        self.v1_results: V1ResultsHook | None = None
        """Overrides v1 per-event results; see `V1ResultsHook`. Unlisted events get "ok"."""
        self._requested_port = port
        self._port: int | None = None
        self._store = Store(keep_events=keep_events)
        self._router = Router()
        self._capture = CaptureEndpoints(api_key=api_key, v1_result=self._resolve_v1_result)
        self._capture.register(self._router)
        self._init_flags(api_key=api_key, personal_api_key=personal_api_key)
        self._register_flags(self._router)
        self._router.add("GET", "/_health", self._health, record=False)
        self._router.add("GET", "/_local/stats", self._local_stats, record=False)
        self._router.add("POST", "/_local/flag_definitions", self._load_definitions, record=False)
        self._faults_lock = threading.Lock()
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    # lifecycle

    def start(self) -> None:
        """Start the server thread; return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("LocalPostHog is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run_thread, args=(ready, failure), name="LocalPostHog", daemon=True
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread = thread

    def stop(self) -> None:
        """Close every connection, stop the thread and wait for it. Safe to call twice."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or stop_event is None:
            return
        loop.call_soon_threadsafe(stop_event.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"LocalPostHog thread did not stop within {_STOP_TIMEOUT}s")
        self._thread = self._loop = self._stop_event = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Starting and stopping take a few milliseconds of thread handshake; not worth a
        # worker thread of the caller's loop.
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run_thread(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop, ready))
        except BaseException as exc:
            if ready.is_set():
                logger.exception("LocalPostHog server thread failed")
            else:  # start() re-raises it in the caller (e.g. port already in use)
                failure.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        stop_event = asyncio.Event()
        http = HttpServer(self._dispatch, max_body_size=self.max_body_size)
        port = await http.start(self.host, self._requested_port)
        self._loop, self._stop_event, self._port = loop, stop_event, port
        ready.set()
        try:
            await stop_event.wait()
        finally:
            await http.close()

    # addresses

    @property
    def port(self) -> int:
        """The port the server listens on (RuntimeError before `start()`)."""
        if self._port is None:
            raise RuntimeError("LocalPostHog is not running; use `with`/`async with` or start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL to give a client as its host, e.g. "http://127.0.0.1:54321"."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        """The only accepted project token, or None when any non-empty token is accepted."""
        return self._capture.api_key

    # what was received

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every accepted event, as received, in arrival order.

        Each access parses the stored bodies afresh (see `event_count` for a cheap count), so
        keep the list you get rather than reading this in a loop.
        """
        return self._store.events

    @property
    def event_count(self) -> int:
        """How many events were accepted (cheap: nothing is parsed)."""
        return self._store.event_count

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of answered capture requests (errors and faults included)."""
        return self._store.requests

    @property
    def batches(self) -> int:
        """How many requests delivered at least one stored event."""
        return self._store.batches

    def clear(self) -> None:
        """Forget received events and requests (faults, delays and `v1_results` stay)."""
        self._store.clear()

    async def wait_for_events(self, n: int, timeout: float = 10.0) -> int:
        """Wait until at least `n` events were accepted; return how many were.

        Raises TimeoutError (saying how many arrived) after `timeout` seconds. It returns a
        count, not the events, so that a benchmark waiting for a million events does not pay
        for parsing them: read `events` afterwards.
        """
        await self._wait_async("events", n, timeout)
        return self._store.event_count

    def wait_for_events_sync(self, n: int, timeout: float = 10.0) -> int:
        """Blocking `wait_for_events`, for synchronous code."""
        self._wait_sync("events", n, timeout)
        return self._store.event_count

    async def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RequestRecord]:
        """Wait until at least `n` capture requests were answered (failed ones count too)."""
        await self._wait_async("requests", n, timeout)
        return self.requests

    def wait_for_requests_sync(self, n: int, timeout: float = 10.0) -> list[RequestRecord]:
        """Blocking `wait_for_requests`, for synchronous code."""
        self._wait_sync("requests", n, timeout)
        return self.requests

    async def _wait_async(self, target: WaitTarget, n: int, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def set_done() -> None:
            if not done.done():
                done.set_result(None)

        def wake() -> None:
            # Called from the server thread; the caller's loop may be gone by then.
            if not loop.is_closed():
                loop.call_soon_threadsafe(set_done)

        waiter = self._store.add_waiter(target, n, wake)
        if waiter is None:
            return
        try:
            async with asyncio.timeout(seconds):
                await done
        except TimeoutError:
            raise TimeoutError(self._timeout_message(target, n, seconds)) from None
        finally:
            self._store.remove_waiter(waiter)

    def _wait_sync(self, target: WaitTarget, n: int, timeout: float) -> None:
        done = threading.Event()
        waiter = self._store.add_waiter(target, n, done.set)
        if waiter is None:
            return
        try:
            if not done.wait(timeout):
                raise TimeoutError(self._timeout_message(target, n, timeout))
        finally:
            self._store.remove_waiter(waiter)

    def _timeout_message(self, target: WaitTarget, n: int, timeout: float) -> str:
        events, requests, batches = self._store.counts()
        got = events if target == "events" else requests
        return (
            f"LocalPostHog: expected at least {n} {target} within {timeout}s, got {got} "
            f"({events} events from {batches} batches; {requests} requests answered)"
        )

    # fault injection

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        *,
        disconnect: bool = False,
        group: str = "capture",
    ) -> None:
        """Answer the next `n` capture requests with `status` without storing their events.

        `headers` adds answer headers (e.g. `{"Retry-After": "2"}`); `body` defaults to a
        PostHog-style JSON error; `disconnect=True` drops the connection instead of answering
        (a network error for the client). Calls queue up: `fail_next(1, 429)` then
        `fail_next(2)` fails three requests, 429 first.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        merged = {"content-type": "application/json"}
        if isinstance(body, Mapping):
            payload = json.dumps(body).encode()
        elif isinstance(body, str):
            payload = body.encode()
            merged["content-type"] = "text/plain; charset=utf-8"
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(
                _FAULT_BODIES.get(
                    status,
                    {"type": "server_error", "code": "injected", "detail": "Injected fault."},
                )
            ).encode()
        merged.update({k.lower(): v for k, v in (headers or {}).items()})
        fault = _Fault(status, merged, payload, disconnect)
        with self._faults_lock:
            self._faults.setdefault(group, deque()).extend([fault] * n)

    def set_delay(self, seconds: float, *, group: str = "capture") -> None:
        """Wait `seconds` before handling each capture request (0 turns it off).

        The delay comes before the events are stored: a client that gives up during it
        (timeout, disconnect) has nothing stored, and its retry is stored once.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._delays[group] = float(seconds)

    def reset_faults(self) -> None:
        """Drop pending `fail_next` faults, delays and `v1_results`."""
        with self._faults_lock:
            self._faults.clear()
        self._delays.clear()
        self.v1_results = None

    @property
    def pending_faults(self) -> int:
        """How many injected faults are still waiting for a request."""
        with self._faults_lock:
            return sum(len(q) for q in self._faults.values())

    def _pop_fault(self, group: str) -> _Fault | None:
        with self._faults_lock:
            queue = self._faults.get(group)
            return queue.popleft() if queue else None

    def _resolve_v1_result(self, uuid: str, event: dict[str, Any]) -> str:
        hook = self.v1_results
        if hook is None:
            return "ok"
        if callable(hook):
            return hook(uuid, event) or "ok"
        # One use per entry, so the resend of a "retry" event goes through.
        result = hook.pop(uuid, None)
        return "ok" if result is None else result

    # extension

    def add_route(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        group: str | None = None,
        record: bool = True,
    ) -> None:
        """Serve `handler` on (method, path); see `Router.add`. Safe before or after start."""
        self._router.add(method, path, handler, group=group, record=record)

    # request handling (server thread)

    async def _dispatch(self, request: Request) -> Response:
        try:
            route, request.path_params = self._router.match(request.method, request.path)
        except HttpError as exc:
            return exc.to_response()
        received_at = time.time()
        group = route.group
        fault = None
        if group is not None:
            delay = self._delays.get(group, 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            fault = self._pop_fault(group)
        if fault is not None:
            response = fault.response()
        else:
            try:
                if request.body_too_large:
                    raise HttpError(
                        413,
                        f"Request body is larger than {self.max_body_size} bytes",
                        code="payload_too_large",
                    )
                decode_body(request, self.max_body_size)
                response = await route.handler(request)
            except HttpError as exc:
                request.info.error = exc.detail
                response = exc.to_response()
            except Exception as exc:
                # Most likely a bad test hook (e.g. an unknown v1 result): answer and record a
                # 500 rather than leave the client guessing.
                logger.exception(
                    "LocalPostHog handler failed for %s %s", request.method, request.path
                )
                request.info.error = f"{type(exc).__name__}: {exc}"
                response = HttpError(
                    500, request.info.error, type="server_error", code="internal"
                ).to_response()
        if route.record:
            self._record(request, route.group, response, fault is not None, received_at)
        return response

    def _record(
        self,
        request: Request,
        group: str | None,
        response: Response,
        fault: bool,
        received_at: float,
    ) -> None:
        info = request.info
        ok = not fault and 200 <= response.status < 300
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            group=group,
            status=0 if response.disconnect else response.status,
            event_count=info.event_count if ok else 0,
            # A faulted request was never decoded: judge it by its header and magic bytes.
            compressed=request.compressed
            or request.content_encoding in _COMPRESSED_ENCODINGS
            or request.body[:2] == b"\x1f\x8b",
            content_encoding=request.content_encoding,
            body_size=request.raw_body_size,
            decoded_size=len(request.body),
            token=info.token,
            api_key=info.api_key,
            historical_migration=info.historical_migration,
            sent_at=info.sent_at,
            created_at=info.created_at,
            results=info.results,
            error=info.error,
            fault=fault,
            received_at=received_at,
            peer=request.peer,
        )
        self._store.commit(record, request.body, info if ok else None)

    async def _health(self, request: Request) -> Response:
        return Response.json({"status": "ok"})

    async def _load_definitions(self, request: Request) -> Response:
        """Load flag definitions into a server running in another process (the demo)."""
        try:
            self.set_flag_definitions(request.json())
        except (TypeError, ValueError) as exc:
            raise HttpError(400, f"bad flag definitions: {exc}") from None
        return Response.json({"status": "ok", "flags": len(self.flag_definitions["flags"])})

    async def _local_stats(self, request: Request) -> Response:
        """Counts for a client in another process (``aioposthog demo``, benchmarks).

        ``?unique=1`` also parses the stored events to count distinct uuids.
        """
        body: dict[str, Any] = {
            "events": self.event_count,
            "batches": self.batches,
            "requests": len(self.requests),
            "flags_requests": self.flags_requests,
            "definitions_requests": self.definitions_requests,
        }
        if request.query.get("unique") in ("1", "true"):
            body["unique_uuids"] = len({event.get("uuid") for event in self.events})
        return Response.json(body)
