"""OpenTelemetry spans and metrics, read back through the SDK's in-memory exporters."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from aioposthog import AsyncPostHog

from ._mock import MockPostHog, fast_retry

KEY = "phc_telemetrysecret"
SELF_HOSTED_KEY = "selfhosted-token-0123456789"

_exporter = InMemorySpanExporter()
_reader = InMemoryMetricReader()
_installed = False


@pytest.fixture
def otel() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    global _installed
    if not _installed:  # global providers can be set once per process
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))
        _installed = True
    _exporter.clear()
    return _exporter, _reader


def client(mock: MockPostHog, key: str = KEY, **options: Any) -> AsyncPostHog:
    options.setdefault("flush_interval", 60)
    options.setdefault("retry", fast_retry())
    return AsyncPostHog(key, host="http://posthog.test", transport=mock.transport, **options)


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "aioposthog":
                continue
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


async def test_a_span_per_request_with_batch_attributes(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, _ = otel
    mock = MockPostHog().then(httpx.Response(503))
    async with client(mock) as posthog:
        for i in range(3):
            await posthog.capture("e", f"u{i}")
        await posthog.flush()
    first, second = spans(exporter, "posthog.capture.batch")
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["posthog.batch.size"] == 3
    assert first.attributes["posthog.attempt"] == 1
    assert first.attributes["http.response.status_code"] == 503
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["posthog.attempt"] == 2
    assert second.attributes["http.response.status_code"] == 200
    assert int(str(second.attributes["http.request.body.size"])) > 0
    assert second.attributes["url.path"] == "/batch/"
    [flush] = spans(exporter, "posthog.flush")
    assert flush.attributes is not None and flush.attributes["posthog.flush.complete"] is True
    assert spans(exporter, "posthog.shutdown")


async def test_counters_and_latency_histogram(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    _, reader = otel
    before = metric_points(reader)
    sent_before = sum(p.value for p in before.get("posthog.events.sent", []))
    mock = MockPostHog()
    async with client(mock, before_send=lambda e: None if e["event"] == "x" else e) as posthog:
        for i in range(4):
            await posthog.capture("e", f"u{i}")
        await posthog.capture("x", "u")
        await posthog.flush()
        points = metric_points(reader)
    assert sum(p.value for p in points["posthog.events.sent"]) - sent_before >= 4
    dropped = {p.attributes["reason"]: p.value for p in points["posthog.events.dropped"]}
    assert dropped["before_send"] >= 1
    assert "posthog.events.enqueued" in points
    [*durations] = points["posthog.request.duration"]
    assert sum(p.count for p in durations) >= 1


async def test_no_key_in_spans_logs_errors_or_reprs(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader], caplog: pytest.LogCaptureFixture
) -> None:
    exporter, _ = otel
    caplog.set_level(logging.DEBUG, logger="aioposthog")
    errors: list[str] = []

    def echo_key(request: httpx.Request) -> httpx.Response:
        body = f'{{"detail": "API key {SELF_HOSTED_KEY} is not valid (Bearer {SELF_HOSTED_KEY})"}}'
        return httpx.Response(401, text=body)

    mock = MockPostHog()
    mock.default = echo_key
    async with client(
        mock,
        key=SELF_HOSTED_KEY,
        capture_mode="v1",
        personal_api_key="phx_personalsecret",
        on_error=lambda e, n: errors.append(f"{e} {e!r} {getattr(e, 'body', '')}"),
    ) as posthog:
        await posthog.capture("e", "u1")
        await posthog.flush()
        texts = [repr(posthog), repr(posthog.config), repr(posthog.stats), str(posthog.stats)]
    texts += errors + [record.getMessage() for record in caplog.records]
    for span in exporter.get_finished_spans():
        texts.append(span.name)
        texts.extend(f"{k}={v!r}" for k, v in (span.attributes or {}).items())
    assert errors, "the 401 must have been reported"
    blob = "\n".join(texts)
    assert SELF_HOSTED_KEY not in blob
    assert "phx_personalsecret" not in blob
    assert "[redacted]" in blob
