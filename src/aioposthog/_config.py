"""Configuration: the frozen `PostHogConfig`, the `RetryPolicy`, and `load_config()`.

Every option is a field of `PostHogConfig`. A field not given explicitly falls back to the
environment variable ``POSTHOG_<FIELD>`` (``POSTHOG_API_KEY``, ``POSTHOG_FLUSH_AT``, ...), then to
its default. `load_config(environment)` reads ``posthog.<environment>.json`` first, with the
environment variables on top and explicit keyword arguments on top of both.

Invalid settings raise `ConfigError` naming the setting and how to fix it; no message ever
includes the value of a key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import backoff
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._exceptions import ConfigError, PostHogError

__all__ = [
    "DEFAULT_HOST",
    "PostHogConfig",
    "RetryPolicy",
    "load_config",
]

DEFAULT_HOST = "https://us.i.posthog.com"
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_EVENT_BYTES = 900 * 1024
# With overflow="block" the producer waits for the sender, so a queue of a few batches keeps
# the sender busy; more would only hold memory.
BLOCK_QUEUE_SIZE = 10_000
# ...and the workload is throughput (imports, workers), not latency: larger batches mean a
# fifth of the requests, and about 10% more events/s delivered with gzip (benchmarks/).
BLOCK_FLUSH_AT = 5_000

# Hosts that serve the app, not ingestion: capture and flags go to the ingestion host.
_INGESTION_HOSTS = {
    "app.posthog.com": "us.i.posthog.com",
    "us.posthog.com": "us.i.posthog.com",
    "eu.posthog.com": "eu.i.posthog.com",
}
_APP_HOSTS = {"us.i.posthog.com": "us.posthog.com", "eu.i.posthog.com": "eu.posthog.com"}

BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any] | None] | None"]
OnError = Callable[[PostHogError, int], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried: full-jitter exponential backoff, built on `backoff`.

    Attempt ``n`` (1-based) that fails with a retryable error waits a random time in
    ``[0, min(cap, base * 2 ** (n - 1))]`` before attempt ``n + 1``, never less than the server's
    ``Retry-After`` (itself capped at ``max_retry_after``), and never past ``deadline`` seconds
    after the first attempt. ``sleep`` is the clock: tests pass one that returns at once.

    >>> RetryPolicy(max_attempts=3, base=0.0).max_attempts
    3
    """

    max_attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    deadline: float | None = 300.0
    max_retry_after: float = 120.0
    jitter: bool = True
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                "RetryPolicy.max_attempts must be at least 1 (1 means: no retries)",
                setting="retry",
            )
        if self.base < 0 or self.cap < 0 or self.max_retry_after < 0:
            raise ConfigError(
                "RetryPolicy.base, cap and max_retry_after must not be negative",
                setting="retry",
            )

    def delays(self) -> Iterator[float]:
        """The waits between attempts, before any ``Retry-After`` floor (one per retry)."""
        waits = backoff.expo(base=2, factor=self.base, max_value=self.cap)
        next(waits)  # backoff's generators are primed with one empty yield
        for _ in range(self.max_attempts - 1):
            value = next(waits)
            yield backoff.full_jitter(value) if self.jitter else value

    def wait_for(self, computed: float, retry_after: float | None) -> float:
        """The wait before the next attempt: the backoff delay, floored by ``Retry-After``."""
        if retry_after is None:
            return computed
        return max(computed, min(retry_after, self.max_retry_after))


class PostHogConfig(BaseModel):
    """Every option of `AsyncPostHog`, validated once and frozen.

    Build it directly, through `AsyncPostHog(api_key, host=..., **options)`, from the environment
    with `PostHogConfig.from_env()`, or from a file with `load_config()`.

    >>> cfg = PostHogConfig(api_key="phc_example", flush_at=50)
    >>> cfg.flush_at, cfg.host
    (50, 'https://us.i.posthog.com')
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    api_key: str | None = Field(default=None, repr=False)
    """The project token (``phc_...``). Required unless ``disabled``."""
    host: str = DEFAULT_HOST
    """Ingestion host; ``app.``/``us.``/``eu.posthog.com`` are rewritten to the ingestion host."""
    personal_api_key: str | None = Field(default=None, repr=False)
    """A ``phs_`` feature-flags secure key or a ``phx_`` personal key: local flag evaluation."""
    project_id: str | None = None
    """Project id for the REST API (``@current`` is used when unset)."""

    flush_at: int = Field(default=1000, ge=1, le=100_000)
    """A batch closes when it holds this many events (1,000; 5,000 with ``overflow="block"``,
    the throughput setting, or ``max_queue_size`` if that is smaller)."""
    flush_interval: float = Field(default=1.0, gt=0, le=3600)
    """...or when its oldest event has waited this many seconds."""
    max_queue_size: int = Field(default=100_000, ge=1)
    """Most events held in memory before the overflow policy applies (100,000; 10,000 with
    ``overflow="block"``, where backpressure makes a large buffer only cost memory)."""
    max_queue_bytes: int = Field(default=128 * 1024 * 1024, ge=MAX_EVENT_BYTES)
    """Most bytes of encoded events held in memory before the overflow policy applies."""
    overflow: Literal["drop_newest", "drop_oldest", "block"] = "drop_newest"
    """When the queue is full, capture() drops the new event, drops the oldest, or waits."""
    max_concurrent_requests: int = Field(default=4, ge=1, le=64)
    """Batches in flight at once."""
    max_retries: int = Field(default=5, ge=0, le=100)
    """Retries per batch after the first attempt (ignored when ``retry`` is given)."""
    retry: RetryPolicy | None = None
    """The full retry policy; by default built from ``max_retries``."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds per capture request (connect, read, write and pool each)."""
    compression: Literal["gzip", "none"] = "gzip"
    capture_mode: Literal["v0", "v1"] = "v0"
    """``v0`` posts to ``/batch/``; ``v1`` to ``/i/v1/analytics/events`` with per-event results."""
    disable_geoip: bool = True
    """Server-side events carry the server's IP, so GeoIP is off unless asked for."""
    super_properties: dict[str, Any] | None = None
    """Properties added to every event (an event's own properties win)."""
    before_send: BeforeSend | None = None
    """Called with each event dict (sync or async); return it (changed or not) or None to drop."""
    on_error: OnError | None = None
    """Called with the error and the number of events affected when a batch fails for good."""
    historical_migration: bool = False
    """Mark batches as historical imports (PostHog routes them to its slower, cheaper pipeline)."""

    poll_interval: float = Field(default=30.0, gt=0)
    feature_flags_request_timeout: float = Field(default=3.0, gt=0)
    flag_cache_ttl: float | None = Field(default=None, gt=0)
    cache_url: str | None = Field(default=None, repr=False)
    spool_dir: Path | None = None
    """Directory where undeliverable events are written at shutdown and resent on next start."""

    send: bool = True
    """False: build, validate and count events, but send nothing."""
    disabled: bool = False
    """True: every call is a no-op (no key needed)."""
    debug: bool = False
    """True: errors raise instead of being reported, and the client logs at DEBUG."""

    @field_validator("host")
    @classmethod
    def _normalise_host(cls, value: str) -> str:
        value = value.strip()
        if "://" not in value:
            raise ValueError(
                "must be a URL with a scheme, e.g. https://us.i.posthog.com or http://127.0.0.1:8000"
            )
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host name")
        netloc = parts.netloc
        if parts.hostname in _INGESTION_HOSTS and parts.port is None:
            netloc = _INGESTION_HOSTS[parts.hostname]
        path = parts.path.rstrip("/")
        return f"{parts.scheme}://{netloc}{path}"

    @field_validator("api_key", "personal_api_key")
    @classmethod
    def _strip_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("is empty")
        if any(ch.isspace() for ch in value):
            raise ValueError("contains whitespace; copy the key again from PostHog's settings")
        return value

    @model_validator(mode="before")
    @classmethod
    def _block_defaults(cls, data: Any) -> Any:
        """With ``overflow="block"``: a small queue and large batches, unless told otherwise."""
        if isinstance(data, dict) and data.get("overflow") == "block":
            if data.get("max_queue_size") is None:
                data = {**data, "max_queue_size": BLOCK_QUEUE_SIZE}
            if data.get("flush_at") is None:
                size = data["max_queue_size"]
                fits = size if isinstance(size, int) and not isinstance(size, bool) else None
                data = {**data, "flush_at": min(BLOCK_FLUSH_AT, fits or BLOCK_FLUSH_AT)}
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> PostHogConfig:
        if not self.disabled:
            if self.api_key is None:
                raise ValueError(
                    "api_key is missing: pass the project token (phc_...) as api_key or set "
                    "POSTHOG_API_KEY (or pass disabled=True to turn the client off)"
                )
            if self.api_key.startswith("phx_") or self.api_key.startswith("phs_"):
                raise ValueError(
                    "api_key looks like a personal or secure key (phx_/phs_): pass it as "
                    "personal_api_key and use the project token (phc_...) as api_key"
                )
        if self.flush_at > self.max_queue_size:
            raise ValueError(
                f"flush_at ({self.flush_at}) is larger than max_queue_size "
                f"({self.max_queue_size}): a batch could never fill; lower flush_at or raise "
                "max_queue_size"
            )
        return self

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force: ``retry`` if given, else one built from ``max_retries``."""
        return (
            self.retry if self.retry is not None else RetryPolicy(max_attempts=self.max_retries + 1)
        )

    @property
    def api_host(self) -> str:
        """The app host for the REST API (``us.i.posthog.com`` -> ``us.posthog.com``)."""
        parts = urlsplit(self.host)
        host = parts.hostname or ""
        if host in _APP_HOSTS and parts.port is None:
            return f"{parts.scheme}://{_APP_HOSTS[host]}{parts.path}"
        return self.host

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise _config_error(exc) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> PostHogConfig:
        """Build a config from explicit options, falling back to ``POSTHOG_*`` variables.

        >>> PostHogConfig.from_env({"POSTHOG_API_KEY": "phc_x", "POSTHOG_FLUSH_AT": "10"}).flush_at
        10
        """
        merged = _from_environment(os.environ if environ is None else environ)
        merged.update({k: v for k, v in explicit.items() if v is not None})
        return cls(**merged)

    def replace(self, **changes: Any) -> PostHogConfig:
        """A copy with some options changed, validated again."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        return type(self)(**data)


# Options that cannot come from an environment variable (callables and policy objects).
_NOT_FROM_ENV = {"before_send", "on_error", "retry"}


def _env_name(field_name: str) -> str:
    return f"POSTHOG_{field_name.upper()}"


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in PostHogConfig.model_fields:
        if name in _NOT_FROM_ENV:
            continue
        raw = environ.get(_env_name(name))
        if raw is None or raw == "":
            continue
        if name == "super_properties":
            try:
                values[name] = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    f'{_env_name(name)} must be a JSON object, e.g. \'{{"service": "api"}}\'',
                    setting=name,
                ) from None
        else:
            values[name] = raw
    return values


def _config_error(exc: pydantic.ValidationError) -> ConfigError:
    problems = []
    first_setting: str | None = None
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if loc:
            first_setting = first_setting or loc
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown setting {loc!r}; see PostHogConfig for the option names")
            else:
                problems.append(
                    f"setting {loc!r} {message} (pass {loc}=... or set {_env_name(loc)})"
                )
        else:
            problems.append(message)
    return ConfigError(
        "Invalid aioposthog configuration: " + "; ".join(problems), setting=first_setting
    )


def load_config(
    environment: str | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> PostHogConfig:
    """Read ``posthog.<environment>.json``, then apply ``POSTHOG_*`` variables and overrides.

    ``environment`` defaults to ``POSTHOG_ENV``, then ``development``. The file is looked up in
    ``directory``, else ``POSTHOG_CONFIG_DIR``, else the current directory. A missing file is an
    error only when the environment was asked for by name; otherwise the environment variables
    alone are used.

    >>> import tempfile, pathlib
    >>> d = tempfile.mkdtemp()
    >>> _ = (pathlib.Path(d) / "posthog.staging.json").write_text('{"flush_at": 20}')
    >>> load_config("staging", directory=d, environ={"POSTHOG_API_KEY": "phc_x"}).flush_at
    20
    """
    env = os.environ if environ is None else environ
    named = environment is not None or "POSTHOG_ENV" in env
    environment = environment or env.get("POSTHOG_ENV") or "development"
    folder = Path(directory or env.get("POSTHOG_CONFIG_DIR") or ".")
    path = folder / f"posthog.{environment}.json"
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}", setting=None) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a JSON object of options", setting=None)
        data.update(loaded)
    elif named:
        raise ConfigError(
            f"No configuration file for environment {environment!r}: expected {path} "
            "(set POSTHOG_CONFIG_DIR or pass directory=...)",
            setting=None,
        )
    data.update(_from_environment(env))
    data.update(overrides)
    return PostHogConfig(**data)
