"""Traces and metrics through `opentelemetry-api` only.

Until the application installs an OpenTelemetry SDK, the tracer and meter are the API's
no-op proxies, so this costs next to nothing. Counters of events are *observable*: they read
the clients' own statistics when a reader collects, so the capture hot path pays nothing for
them. No attribute ever carries an API key or an event's content.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from ._version import __version__

if TYPE_CHECKING:
    from ._stats import StatsRecorder

__all__ = [
    "INSTRUMENTATION_NAME",
    "forget_stats",
    "register_stats",
    "request_duration",
    "retire_stats",
    "tracer",
]

INSTRUMENTATION_NAME = "aioposthog"

tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)
_meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__)

_recorders: weakref.WeakSet[StatsRecorder] = weakref.WeakSet()
# Counts of closed clients: observable counters are cumulative, so what a client counted
# must outlive it.
_retired: dict[str, int] = {"enqueued": 0, "sent": 0}
_retired_dropped: dict[str, int] = {}


def register_stats(recorder: StatsRecorder) -> None:
    """Make a client's statistics visible to the observable counters."""
    _recorders.add(recorder)


def forget_stats(recorder: StatsRecorder) -> None:
    """Stop observing a recorder without counting it (a forked child's copy of its parent's)."""
    _recorders.discard(recorder)


def retire_stats(recorder: StatsRecorder) -> None:
    """Keep a closing client's final counts in the totals, and stop observing it."""
    if recorder not in _recorders:
        return
    _recorders.discard(recorder)
    _retired["enqueued"] += recorder.enqueued
    _retired["sent"] += recorder.sent
    for reason, count in recorder.dropped.items():
        _retired_dropped[reason] = _retired_dropped.get(reason, 0) + count


def _observe_enqueued(_: CallbackOptions) -> Iterable[Observation]:
    yield Observation(_retired["enqueued"] + sum(r.enqueued for r in list(_recorders)))


def _observe_sent(_: CallbackOptions) -> Iterable[Observation]:
    yield Observation(_retired["sent"] + sum(r.sent for r in list(_recorders)))


def _observe_dropped(_: CallbackOptions) -> Iterable[Observation]:
    totals = dict(_retired_dropped)
    for recorder in list(_recorders):
        for reason, count in recorder.dropped.items():
            totals[reason] = totals.get(reason, 0) + count
    for reason, count in totals.items():
        yield Observation(count, {"reason": reason})


def _observe_queue_depth(_: CallbackOptions) -> Iterable[Observation]:
    yield Observation(sum(r.queue_depth() for r in list(_recorders)))


_meter.create_observable_counter(
    "posthog.events.enqueued",
    callbacks=[_observe_enqueued],
    unit="{event}",
    description="Events accepted into the capture queue",
)
_meter.create_observable_counter(
    "posthog.events.sent",
    callbacks=[_observe_sent],
    unit="{event}",
    description="Events PostHog acknowledged",
)
_meter.create_observable_counter(
    "posthog.events.dropped",
    callbacks=[_observe_dropped],
    unit="{event}",
    description="Events lost, by reason",
)
_meter.create_observable_gauge(
    "posthog.queue.depth",
    callbacks=[_observe_queue_depth],
    unit="{event}",
    description="Events waiting in the capture queue",
)
request_duration = _meter.create_histogram(
    "posthog.request.duration",
    unit="s",
    description="Duration of HTTP requests to PostHog",
)
