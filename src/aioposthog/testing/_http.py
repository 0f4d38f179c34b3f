"""A small, fast HTTP/1.1 server on asyncio and h11: just what LocalPostHog needs.

Keep-alive, Content-Length and chunked request bodies (h11 decodes both) and `Expect:
100-continue`. One asyncio.Protocol per connection, no streams layer: the server is a benchmark
sink and every microsecond per request shows. Each complete request goes to one
`async app(Request) -> Response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qsl, unquote

import h11

from ._messages import DEFAULT_MAX_BODY_SIZE, Handler, HttpError, Request, Response

__all__ = ["HttpServer"]

logger = logging.getLogger("aioposthog.testing")

# h11 refuses header blocks over 16 KiB by default; real clients stay far below that.
_MAX_HEADER_BYTES = 64 * 1024
# A body over the limit is read and thrown away (so the client can read our 413 instead of a
# reset), but not forever.
_MAX_DRAIN_FACTOR = 4
# Bytes a client may send ahead (pipelining) while its previous request is being handled.
_MAX_BACKLOG = 4 * 1024 * 1024

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class HttpServer:
    """Listens on one socket and hands each complete request to `app`.

    Owned by one event loop; `close()` drops every connection and cancels handlers in flight.
    """

    def __init__(self, app: Handler, *, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_closed: asyncio.Future[None] | None = None

    def _forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        done = self._all_closed
        if not self._connections and done is not None and not done.done():
            done.set_result(None)

    async def start(self, host: str, port: int) -> int:
        """Listen on (host, port) and return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=1024)
        return cast(int, self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, cancel handlers, close every connection and wait for the sockets."""
        if self._server is not None:
            # Stop accepting first, and let connections already accepted get their transport
            # (a few loop turns later) before the server closes: closing it under them trips
            # an assertion in asyncio (3.11) and leaks their sockets.
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            self._server.close()
        await self._close_connections()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Transports close their sockets on later loop iterations; wait for it so no socket
        # outlives the server (a ResourceWarning under pytest's filterwarnings=error).
        if self._connections:
            self._all_closed = asyncio.get_running_loop().create_future()
            for conn in list(self._connections):
                conn.close()
            try:
                # A client that does not read keeps close() waiting on its write buffer.
                await asyncio.wait_for(asyncio.shield(self._all_closed), 1.0)
            except TimeoutError:
                for conn in list(self._connections):
                    conn.abort()
                await self._all_closed


class _Connection(asyncio.Protocol):
    """One client connection: feeds h11, runs one request at a time, writes the answers."""

    def __init__(self, owner: HttpServer) -> None:
        self._owner = owner
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        self._transport: asyncio.Transport | None = None
        self._request: h11.Request | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._busy = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._peer = ""
        self._backlog = 0
        self._paused = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._owner._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._owner._forget(self)
        if self._task is not None:
            # The client gave up (e.g. timed out during set_delay): nothing is stored for it.
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        if not self._busy:
            self._pump()
            return
        # Reading goes on while a handler runs, so that a client hanging up is noticed (and its
        # request cancelled); only a client pipelining megabytes is made to wait.
        self._backlog += len(data)
        if self._backlog > _MAX_BACKLOG and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> None:
        # HTTP clients do not half-close: EOF means the client is gone. Returning None lets
        # the transport close, and connection_lost cancels a request still in progress.
        return None

    # internals

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    def _pump(self) -> None:
        conn = self._h11
        while not self._busy and not self._closed:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            kind = type(event)
            if kind is h11.Data:
                data = cast(h11.Data, event).data
                self._size += len(data)
                if self._too_large:
                    if self._size > _MAX_DRAIN_FACTOR * self._owner.max_body_size:
                        self._dispatch()
                elif self._size > self._owner.max_body_size:
                    self._too_large = True
                    self._chunks.clear()
                else:
                    self._chunks.append(data)
            elif kind is h11.Request:
                self._start(cast(h11.Request, event))
            elif kind is h11.EndOfMessage:
                self._dispatch()
            elif kind is h11.ConnectionClosed:
                self.close()
                return
            else:  # NEED_DATA, PAUSED (waiting for start_next_cycle)
                return

    def _start(self, event: h11.Request) -> None:
        self._request = event
        self._chunks = []
        self._size = 0
        self._too_large = False
        for name, value in event.headers:
            if name == b"content-length":
                self._too_large = int(value) > self._owner.max_body_size
        if self._h11.they_are_waiting_for_100_continue:
            if self._too_large:
                # Answer now: the client holds the body back until it hears from us.
                self._dispatch()
            else:
                self._write(self._h11.send(h11.InformationalResponse(status_code=100, headers=[])))

    def _dispatch(self) -> None:
        event = self._request
        assert event is not None
        assert self._transport is not None
        target = event.target.decode("latin-1")
        path, _, query_string = target.partition("?")
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        request = Request(
            method=event.method.decode("ascii"),
            path=unquote(path),
            query=dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {},
            headers=headers,
            body=bytes(body),
            raw_body_size=self._size,
            body_too_large=self._too_large,
            peer=self._peer,
        )
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._run(request))
        self._task = task
        self._owner._tasks.add(task)
        task.add_done_callback(self._owner._tasks.discard)

    async def _run(self, request: Request) -> None:
        try:
            response = await self._owner.app(request)
        except HttpError as exc:
            response = exc.to_response()
        except Exception:
            logger.exception("LocalPostHog handler failed for %s %s", request.method, request.path)
            response = Response.json(
                {"type": "server_error", "code": "internal", "detail": "handler failed"}, 500
            )
        self._task = None
        if self._closed:
            return
        if response.disconnect:
            self.abort()
            return
        self._respond(response)
        self._busy = False
        self._backlog = 0
        if not self._closed:
            if self._paused:
                assert self._transport is not None
                self._paused = False
                self._transport.resume_reading()
            self._pump()

    def _respond(self, response: Response) -> None:
        conn = self._h11
        status = response.status
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            headers.append((b"content-length", str(len(response.body)).encode()))
        if self._too_large:
            # We threw the body away (or never read it): this connection cannot be reused.
            headers.append((b"connection", b"close"))
        out = [conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))]
        if response.body and not no_body:
            out.append(conn.send(h11.Data(data=response.body)))
        out.append(conn.send(h11.EndOfMessage()))
        self._write(b"".join(out))
        if conn.our_state is h11.MUST_CLOSE:
            self.close()
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()
            return
        self._request = None
        self._size = 0
        self._too_large = False

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self._closed:
            status = exc.error_status_hint
            body = json.dumps(
                {"type": "validation_error", "code": "bad_request", "detail": str(exc)}
            ).encode()
            with contextlib.suppress(h11.LocalProtocolError):
                self._write(
                    self._h11.send(
                        h11.Response(
                            status_code=status,
                            headers=[
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"),
                            ],
                            reason=_reason(status),
                        )
                    )
                    + (self._h11.send(h11.Data(data=body)) or b"")
                    + (self._h11.send(h11.EndOfMessage()) or b"")
                )
        self.close()

    def _write(self, data: bytes | None) -> None:
        if data and self._transport is not None and not self._closed:
            self._transport.write(data)


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")
