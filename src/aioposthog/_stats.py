"""Counters of what the client did with each event, and their public snapshot `ClientStats`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

__all__ = ["DROP_REASONS", "ClientStats", "StatsRecorder"]

# Every reason an event can be lost for; `ClientStats.dropped` always has each key.
DROP_REASONS = (
    "queue_full",  # the queue was full and the overflow policy dropped it
    "before_send",  # the before_send hook returned None
    "shutdown",  # still queued when aclose() ran out of time (and no spool_dir)
    "rejected_by_server",  # 400/401/403 or another non-retryable answer
    "payload_too_large",  # a single event still refused with 413
    "send_failed",  # retries exhausted on network errors, 429 or 5xx
    "server_drop",  # capture v1 answered "drop" for it
    "server_limited",  # capture v1 answered "limited" (quota or rate) for it
)


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of a client's counters. Take a new one to see changes.

    Attributes:
        captured: events accepted by capture() (after validation and before_send).
        enqueued: events put in the queue (equal to captured unless ``send=False``).
        sent: events PostHog acknowledged.
        dropped: lost events by reason (every reason of `DROP_REASONS` is present).
        retried: request attempts that were retried.
        failed: events that reached the sender and could not be delivered (also in dropped,
            unless written to the spool).
        spooled: events written to the spool directory for a later start.
        queue_depth: events waiting in the queue now.
        queue_bytes: encoded bytes waiting in the queue now.
        in_flight_batches: batches being sent now.
        batches_sent: requests that delivered a batch.
        bytes_sent: request body bytes sent (compressed, successful requests only).
        last_success: when a batch was last delivered.
        last_error: the message of the last delivery error, if any.
    """

    captured: int
    enqueued: int
    sent: int
    dropped: Mapping[str, int]
    retried: int
    failed: int
    spooled: int
    queue_depth: int
    queue_bytes: int
    in_flight_batches: int
    batches_sent: int
    bytes_sent: int
    last_success: datetime | None
    last_error: str | None

    @property
    def dropped_total(self) -> int:
        """All lost events, whatever the reason."""
        return sum(self.dropped.values())


@dataclass(slots=True, eq=False, weakref_slot=True)
class StatsRecorder:
    """The mutable counters behind `ClientStats`; plain ints, touched only on the event loop."""

    captured: int = 0
    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    spooled: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    in_flight_batches: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    queue_depth: Callable[[], int] = field(default=lambda: 0)
    queue_bytes: Callable[[], int] = field(default=lambda: 0)

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` events lost for ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def snapshot(self) -> ClientStats:
        """Freeze the current values."""
        return ClientStats(
            captured=self.captured,
            enqueued=self.enqueued,
            sent=self.sent,
            dropped=MappingProxyType(dict(self.dropped)),
            retried=self.retried,
            failed=self.failed,
            spooled=self.spooled,
            queue_depth=self.queue_depth(),
            queue_bytes=self.queue_bytes(),
            in_flight_batches=self.in_flight_batches,
            batches_sent=self.batches_sent,
            bytes_sent=self.bytes_sent,
            last_success=self.last_success,
            last_error=self.last_error,
        )
