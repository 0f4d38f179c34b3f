"""The client works under respx's global mock as well as with an injected transport."""

from __future__ import annotations

import gzip
import json

import httpx
import respx

from aioposthog import AsyncPostHog


async def test_capture_under_respx() -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.post("https://eu.i.posthog.com/batch/").mock(
            return_value=httpx.Response(200, json={"status": 1})
        )
        async with AsyncPostHog("phc_respx", host="https://eu.posthog.com") as posthog:
            await posthog.capture("e", "u1", {"k": "v"})
        assert route.call_count == 1
        request = route.calls.last.request
        body = json.loads(gzip.decompress(request.content))
        assert body["batch"][0]["properties"]["k"] == "v"
        assert request.headers["user-agent"].startswith("aioposthog/")
