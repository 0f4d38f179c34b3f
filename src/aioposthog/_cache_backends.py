"""How a ``cache_url`` becomes an aiocache backend, and the names the cache shows to others.

- `redact_url`: a URL with its password masked, for every log line, error and ``repr``;
- `process_owner_id`: this process's id in a Redis leader lock (``host:pid:random``);
- `build_redis`: aiocache's ``RedisCache`` on ``redis.asyncio`` with a bounded, blocking
  connection pool, from a ``redis://`` or ``rediss://`` URL (query options checked);
- `backend_errors`: what a backend raises when it is down (so the cache can degrade to misses).
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any, Final
from urllib.parse import urlsplit

from ._exceptions import ConfigError

__all__ = ["backend_errors", "build_redis", "process_owner_id", "redact_url"]

_COMMON_QUERY_OPTIONS: Final = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "max_connections",
        "health_check_interval",
        "client_name",
    }
)
_TLS_QUERY_OPTIONS: Final = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
_OWNERS: dict[int, str] = {}


def process_owner_id() -> str:
    """This process's leader-lock owner id: ``host:pid:random``, renewed after a fork.

    The host and pid are there for whoever reads the lock key in Redis; the random part makes
    the id unique even when pids are reused (containers all run as pid 1).
    """
    pid = os.getpid()
    owner = _OWNERS.get(pid)
    if owner is None:
        owner = _OWNERS.setdefault(pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(8)}")
    return owner


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs, errors and ``repr``.

    >>> redact_url("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        # No colon: the whole userinfo may be a bare password ("redis://s3cret@host").
        userinfo = f"{user}:***" if colon else "***"
        parts = parts._replace(netloc=f"{userinfo}@{hostport}")
    if parts.query:
        fields = []
        for field in parts.query.split("&"):
            name, eq, _ = field.partition("=")
            fields.append(f"{name}=***" if eq and "pass" in name.lower() else field)
        parts = parts._replace(query="&".join(fields))
    return parts.geturl()


def backend_errors(kind: str) -> tuple[type[BaseException], ...]:
    """What a backend raises when it is unreachable or refuses a command (timeouts included)."""
    if kind == "redis":
        from redis.exceptions import RedisError

        return (OSError, RedisError)
    return (OSError,)


def build_redis(url: str, *, timeout: float, max_connections: int) -> Any:
    """An aiocache ``RedisCache`` for ``url``; raises ConfigError (with the URL redacted)."""
    safe = redact_url(url)
    try:
        from aiocache.backends.redis import RedisCache
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio.connection import parse_url
    except ImportError as exc:  # the optional extra is missing
        raise ConfigError(
            f"cache_url {safe} needs the redis package: pip install 'aioposthog[redis]'",
            setting="cache_url",
        ) from exc
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise ConfigError(
            f"cache_url {safe} is not a valid Redis URL", setting="cache_url"
        ) from exc
    allowed = _COMMON_QUERY_OPTIONS | (_TLS_QUERY_OPTIONS if url.startswith("rediss:") else set())
    connection_fields = {"host", "port", "db", "username", "password", "connection_class"}
    unknown = sorted(set(options) - allowed - connection_fields)
    if unknown:
        raise ConfigError(
            f"cache_url {safe}: unsupported option(s) {', '.join(unknown)}; "
            f"supported: {', '.join(sorted(allowed))}",
            setting="cache_url",
        )
    return RedisCache(
        # No serializer role: FlagCache writes its own JSON text (dumps_fn/loads_fn bypass it).
        namespace=None,  # keys arrive fully built
        timeout=None,  # FlagCache._guard enforces one timeout for every command
        endpoint=options.pop("host", "127.0.0.1"),
        port=options.pop("port", 6379),
        db=options.pop("db", 0),
        password=options.pop("password", None),
        create_connection_timeout=options.pop("socket_connect_timeout", timeout),
        pool_max_size=options.pop("max_connections", max_connections),
        # A bounded pool that waits for a free connection: a thousand concurrent callers in
        # a thousand processes must not open a million connections to one Redis.
        connection_pool_class=BlockingConnectionPool,
        connection_pool_kwargs={"timeout": timeout, "socket_timeout": timeout, **options},
    )
