"""The batcher: cuts batches from the queue and delivers them, at most N at a time.

A batch closes at ``flush_at`` events, at 5 MiB, when its window has been open for
``flush_interval`` seconds, or at once while a flush or shutdown is waiting. Each batch is
delivered by its own task in the client's task group; a semaphore keeps at most
``max_concurrent_requests`` in flight, and while all are busy events simply wait in the
queue (where the overflow policy bounds them).

Delivery: the transport retries what is retryable; a 413 splits the batch in two and
sends each half; capture v1's per-event ``retry`` results are sent again; whatever is lost
is counted by reason, reported to ``on_error``, or written to the spool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import anyio
import anyio.abc
import httpx

from .._config import MAX_BATCH_BYTES, PostHogConfig
from .._exceptions import PayloadTooLargeError, PostHogError
from .._serialize import now_iso, uuid7
from .._stats import StatsRecorder
from .._transport import USER_AGENT, Transport
from .._version import __version__
from ._encode import gzip_body, join_body, v0_envelope, v1_envelope
from ._queue import EventQueue, Item
from ._spool import Spool

__all__ = ["Batcher"]

logger = logging.getLogger("aioposthog")

_V0_PATH = "/batch/"
_V1_PATH = "/i/v1/analytics/events"


class Batcher:
    """Owns the sending side of the capture pipeline."""

    def __init__(
        self,
        config: PostHogConfig,
        queue: EventQueue,
        transport: Transport,
        stats: StatsRecorder,
        spool: Spool | None,
    ) -> None:
        self._config = config
        self._queue = queue
        self._transport = transport
        self._stats = stats
        self._spool = spool
        self._api_key = config.api_key or ""
        self._retry = config.retry_policy
        self._slots = asyncio.Semaphore(config.max_concurrent_requests)
        self._inflight: dict[int, int] = {}  # batch id -> sequence number of its first event
        self._next_batch_id = 0
        self._flush_target = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopping = False

    # -- flush bookkeeping -------------------------------------------------------------------

    def _watermark(self) -> int:
        """Every event with a sequence number below this has been delivered or given up."""
        queued = self._queue.head_seq
        return min(self._inflight.values(), default=queued) if self._inflight else queued

    def _resolve_waiters(self) -> None:
        if not self._waiters:
            return
        mark = self._watermark()
        keep = []
        for target, future in self._waiters:
            if target <= mark:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    async def flush(self) -> None:
        """Send everything queued now, and return once it is delivered or given up."""
        target = self._queue.tail_seq
        if target <= self._watermark():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._flush_target = max(self._flush_target, target)
        self._queue.wake()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def stop(self) -> None:
        """Cut everything that is left, then let `run` return once the queue is empty."""
        self._stopping = True
        self._queue.wake()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Cut batches and start their deliveries until stopped and empty."""
        queue = self._queue
        config = self._config
        while True:
            self._resolve_waiters()
            if not len(queue):
                if self._stopping:
                    return
                await queue.wait_wake()
                continue
            forced = self._stopping or self._flush_target > queue.head_seq
            if not forced and len(queue) < config.flush_at and queue.nbytes < MAX_BATCH_BYTES:
                remaining = queue.window_start + config.flush_interval - time.monotonic()
                if remaining > 0:
                    await queue.wait_wake(remaining)
                    continue
            await self._slots.acquire()
            if not len(queue):
                self._slots.release()
                continue
            start, batch = queue.cut(config.flush_at, MAX_BATCH_BYTES)
            batch_id = self._next_batch_id
            self._next_batch_id += 1
            self._inflight[batch_id] = start
            self._stats.in_flight_batches += 1
            task_group.start_soon(self._run_batch, batch_id, batch)

    async def _run_batch(self, batch_id: int, batch: list[Item]) -> None:
        try:
            await self._deliver(batch)
        finally:
            self._slots.release()
            del self._inflight[batch_id]
            self._stats.in_flight_batches -= 1
            self._resolve_waiters()

    # -- delivery ----------------------------------------------------------------------------

    async def _deliver(self, batch: list[Item]) -> None:
        """Deliver one batch, splitting it on 413; never raises except for cancellation."""
        try:
            response = await self._send(batch)
        except anyio.get_cancelled_exc_class():
            self._lose(batch, "shutdown", None, spoolable=True)
            raise
        except PayloadTooLargeError as error:
            if len(batch) == 1:
                self._lose(batch, "payload_too_large", error, spoolable=False)
                return
            middle = len(batch) // 2
            await self._deliver_all([batch[:middle], batch[middle:]])
            return
        except PostHogError as error:
            self._failed(batch, error)
            return
        if self._config.capture_mode == "v1":
            await self._settle_v1(batch, response)
        else:
            self._delivered(len(batch), response)

    async def _deliver_all(self, parts: Sequence[list[Item]]) -> None:
        for index, part in enumerate(parts):
            try:
                await self._deliver(part)
            except anyio.get_cancelled_exc_class():
                for rest in parts[index + 1 :]:
                    self._lose(rest, "shutdown", None, spoolable=True)
                raise

    def _delivered(self, count: int, response: httpx.Response) -> None:
        stats = self._stats
        stats.sent += count
        stats.batches_sent += 1
        stats.bytes_sent += len(response.request.content) if response.request else 0
        stats.last_success = datetime.now(UTC)

    def _failed(self, batch: list[Item], error: PostHogError) -> None:
        """A request failed for good: retries ran out (spoolable) or PostHog refused it."""
        reason = "send_failed" if error.retryable else "rejected_by_server"
        self._lose(batch, reason, error, spoolable=error.retryable)

    def _lose(
        self, batch: list[Item], reason: str, error: PostHogError | None, *, spoolable: bool
    ) -> None:
        stats = self._stats
        if error is not None:
            stats.failed += len(batch)
            stats.last_error = error.message
            logger.warning(
                "aioposthog: %d events not delivered (%s): %s", len(batch), reason, error.message
            )
        if spoolable and self._spool is not None:
            try:
                stats.spooled += self._spool.write(batch)
                return
            except OSError as exc:
                logger.error("aioposthog: could not write the spool (%s)", exc)
        stats.drop(reason, len(batch))
        on_error = self._config.on_error
        if on_error is not None and error is not None:
            try:
                on_error(error, len(batch))
            except Exception:
                logger.exception("aioposthog: the on_error callback raised")

    def _sort_v1(self, batch: list[Item], response: httpx.Response) -> list[Item]:
        """Count v1's per-event results (ok/warning sent, drop/limited lost); return the retries."""
        results = _v1_results(response)
        retry: list[Item] = []
        delivered = 0
        for item in batch:
            outcome = results.get(item[0], "ok")
            if outcome in ("ok", "warning"):
                delivered += 1
            elif outcome == "retry":
                retry.append(item)
            else:
                self._stats.drop("server_limited" if outcome == "limited" else "server_drop")
        if delivered:
            self._delivered(delivered, response)
        return retry

    async def _settle_v1(self, batch: list[Item], response: httpx.Response) -> None:
        """Settle a v1 answer, resending the events it asked to retry, with backoff."""
        retry = self._sort_v1(batch, response)
        if not retry:
            return
        for wait in self._retry.delays():
            self._stats.retried += 1
            await self._retry.sleep(wait)
            try:
                response = await self._send(retry)
            except anyio.get_cancelled_exc_class():
                self._lose(retry, "shutdown", None, spoolable=True)
                raise
            except PostHogError as error:
                self._failed(retry, error)
                return
            retry = self._sort_v1(retry, response)
            if not retry:
                return
        self._lose(
            retry,
            "send_failed",
            PostHogError(f"PostHog asked to retry {len(retry)} events past the retry limit"),
            spoolable=True,
        )

    async def _send(self, batch: list[Item]) -> httpx.Response:
        config = self._config
        joined = [data for _, data in batch]  # the encoded events
        gzip = config.compression == "gzip"
        historical = config.historical_migration
        if config.capture_mode == "v1":
            request_id = uuid7()
            created_at = now_iso()
            envelope = v1_envelope(historical_migration=historical, created_at=created_at)
            payload = await gzip_body(envelope, joined) if gzip else join_body(envelope, joined)

            async def build_v1(attempt: int) -> tuple[Mapping[str, str], bytes]:
                headers = {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self._api_key}",
                    "PostHog-Sdk-Info": f"aioposthog/{__version__}",
                    "PostHog-Attempt": str(attempt),
                    "PostHog-Request-Id": request_id,
                    "PostHog-Request-Timestamp": now_iso(),
                }
                if gzip:
                    headers["Content-Encoding"] = "gzip"
                return headers, payload

            build = build_v1
            path = _V1_PATH
        else:

            async def build_v0(attempt: int) -> tuple[Mapping[str, str], bytes]:
                # sent_at is stamped per attempt: the server corrects clock skew with it.
                envelope = v0_envelope(
                    self._api_key, historical_migration=historical, sent_at=now_iso()
                )
                headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
                if not gzip:
                    return headers, join_body(envelope, joined)
                headers["Content-Encoding"] = "gzip"
                return headers, await gzip_body(envelope, joined)

            build = build_v0
            path = _V0_PATH

        def on_retry() -> None:
            self._stats.retried += 1

        return await self._transport.send(
            "POST",
            path,
            build,
            retry=self._retry,
            span_name="posthog.capture.batch",
            attributes={
                "posthog.batch.size": len(batch),
                "posthog.capture.mode": config.capture_mode,
            },
            on_retry=on_retry,
        )


def _v1_results(response: httpx.Response) -> dict[str, str]:
    try:
        parsed = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    results = parsed.get("results") if isinstance(parsed, dict) else None
    if not isinstance(results, dict):
        return {}
    out: dict[str, str] = {}
    for uuid, value in results.items():
        if isinstance(value, dict) and isinstance(value.get("result"), str):
            out[uuid] = value["result"]
    return out
