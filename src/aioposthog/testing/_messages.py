"""The request and response types handlers see, and request-body decompression."""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._records import RequestInfo

__all__ = ["DEFAULT_MAX_BODY_SIZE", "Handler", "HttpError", "Request", "Response", "decode_body"]

DEFAULT_MAX_BODY_SIZE = 20 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class HttpError(Exception):
    """Raised by a handler (or the server) to answer with a PostHog-style JSON error.

    >>> HttpError(400, "batch is empty").status
    400
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "validation_error",  # the field is called `type` on the wire
        code: str = "invalid_payload",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.type = type
        self.code = code
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        """The JSON answer PostHog gives for this error."""
        body = {"type": self.type, "code": self.code, "detail": self.detail, "attr": None}
        return Response.json(body, status=self.status, headers=self.headers)


@dataclass(slots=True)
class Request:
    """One HTTP request as a handler sees it.

    `headers` has lower-cased names (repeated headers joined with ", "), `query` keeps the last
    value of a repeated parameter, and `body` is already decompressed by the time a route
    handler runs (`raw_body_size` is the size on the wire). `peer` is the client's "host:port",
    the same for every request of one keep-alive connection.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_body_size: int
    body_too_large: bool = False
    peer: str = ""
    compressed: bool = False
    path_params: dict[str, str] = field(default_factory=dict)
    info: RequestInfo = field(default_factory=RequestInfo)

    @property
    def content_encoding(self) -> str | None:
        """The `Content-Encoding` header, lower-cased, or None."""
        value = self.headers.get("content-encoding")
        return value.strip().lower() if value else None

    def bearer_token(self) -> str | None:
        """The token of an `Authorization: Bearer <token>` header, or None."""
        value = self.headers.get("authorization")
        if not value:
            return None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def json(self) -> Any:
        """The body parsed as JSON; HttpError(400) if it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            raise HttpError(400, f"Request body is not valid JSON: {exc}") from exc


@dataclass(slots=True)
class Response:
    """An answer from a handler. `disconnect=True` drops the connection without answering."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """A JSON answer (`Content-Type: application/json` unless `headers` says otherwise)."""
        merged = {"content-type": "application/json"}
        if headers:
            merged.update({k.lower(): v for k, v in headers.items()})
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), merged)


Handler = Callable[[Request], Awaitable[Response]]


def decode_body(request: Request, max_size: int) -> None:
    """Decompress `request.body` in place (gzip by header or magic bytes, deflate by header).

    HttpError 400 for a corrupt body, 413 past `max_size` decompressed, 415 for an encoding
    this server cannot read.
    """
    encoding = request.content_encoding
    body = request.body
    if encoding in (None, "identity", ""):
        if body[:2] != _GZIP_MAGIC:
            return
        encoding = "gzip"
    if encoding in ("gzip", "x-gzip"):
        request.body = _inflate(body, 16 + zlib.MAX_WBITS, max_size, "gzip")
    elif encoding == "deflate":
        # RFC 9110 says zlib-wrapped, but some clients send raw deflate: accept both.
        wbits = 32 + zlib.MAX_WBITS if body[:1] in (b"\x78", b"\x1f") else -zlib.MAX_WBITS
        request.body = _inflate(body, wbits, max_size, "deflate")
    else:
        raise HttpError(
            415,
            f"Unsupported Content-Encoding: {encoding}",
            code="unsupported_encoding",
        )
    request.compressed = True


def _inflate(data: bytes, wbits: int, max_size: int, name: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    remaining = data
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(remaining, max_size + 1 - total)
            total += len(out)
            if total > max_size or inflater.unconsumed_tail:
                raise _too_large(max_size, "decompressed body")
            parts.append(out)
            if not inflater.eof:
                raise HttpError(400, f"Truncated {name} body")
            remaining = inflater.unused_data
            # gzip allows several members back to back; anything else trailing is corruption.
            if not (wbits > 16 and remaining[:2] == _GZIP_MAGIC):
                break
    except zlib.error as exc:
        raise HttpError(400, f"Invalid {name} body: {exc}") from exc
    if remaining.strip(b"\x00"):
        raise HttpError(400, f"Invalid {name} body: trailing data")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(max_size: int, what: str = "body") -> HttpError:
    return HttpError(
        413,
        f"Request {what} is larger than {max_size} bytes",
        code="payload_too_large",
    )
