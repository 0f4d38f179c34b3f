"""The examples run: the import script end to end, the Starlette app through ASGI."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import httpx
import pytest

from aioposthog.testing import LocalPostHog, sample_flag_definitions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


async def test_import_example_delivers_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # its spool directory lands here
    monkeypatch.syspath_prepend(str(ROOT))
    module = importlib.import_module("examples.import_events")
    async with LocalPostHog() as server:
        await module.main(5_000, server.url, "phc_example")
        await server.wait_for_events(5_000)
        events = server.events
    assert len({e["uuid"] for e in events}) == 5_000
    # batches may arrive out of order (four in flight): compare the set, not the first
    assert min(e["timestamp"] for e in events) == "2024-01-01T00:00:00+00:00"


async def test_starlette_example_contexts_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    async with LocalPostHog() as server:
        server.set_flag_definitions(sample_flag_definitions())
        monkeypatch.setenv("POSTHOG_HOST", server.url)
        sys.modules.pop("examples.starlette_app", None)
        module = importlib.import_module("examples.starlette_app")
        async with module.posthog:
            transport = httpx.ASGITransport(app=module.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                answers = [
                    (await client.get("/checkout", headers={"x-user-id": f"u{i}"})).json()
                    for i in range(20)
                ]
        await server.wait_for_events(20)
        started = [e for e in server.events if e["event"] == "checkout started"]
    assert {a["one_page"] for a in answers} == {True, False}
    assert sorted(e["distinct_id"] for e in started) == sorted(f"u{i}" for i in range(20))
    assert all(e["properties"]["route"] == "/checkout" for e in started)
    assert all("$feature/checkout-experiment" in e["properties"] for e in started)
