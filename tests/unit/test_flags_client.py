"""Feature flags through the client, on httpx's transport seam: remote, local, events, cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aioposthog import AsyncPostHog, UsageError

from ._mock import MockPostHog, fast_retry

KEY = "phc_flagtest"
PERSONAL = "phs_secretflagkey"

DEFINITIONS: dict[str, Any] = {
    "flags": [
        {
            "id": 1,
            "key": "beta",
            "active": True,
            "version": 3,
            "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
        },
        {
            "id": 2,
            "key": "pro-only",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}
                        ],
                        "rollout_percentage": 100,
                    }
                ],
                "payloads": {"true": '{"limit": 10}'},
            },
        },
    ],
    "group_type_mapping": {},
    "cohorts": {},
}


def v2_answer(flags: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "flags": {
            key: {
                "key": key,
                "enabled": value is not False,
                "variant": value if isinstance(value, str) else None,
                "reason": {"code": "condition_match", "condition_index": 0, "description": "m"},
                "metadata": {"id": 9, "version": 2, "payload": json.dumps({"k": key})},
            }
            for key, value in flags.items()
        },
        "errorsWhileComputingFlags": False,
        "requestId": "req-123",
    }
    body.update(extra)
    return body


class FlagsServer(MockPostHog):
    """MockPostHog plus /flags and /flags/definitions."""

    def __init__(self) -> None:
        super().__init__()
        self.flags_answer: Callable[[dict[str, Any]], httpx.Response] = lambda body: httpx.Response(
            200, json=v2_answer({"remote-flag": "variant-b"})
        )
        self.definitions: httpx.Response = httpx.Response(
            200, json=DEFINITIONS, headers={"ETag": '"v1"'}
        )
        self.flags_bodies: list[dict[str, Any]] = []
        self.definition_requests: list[httpx.Request] = []
        self.default = self.route

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/flags/definitions") or path.startswith("/api/feature_flag"):
            self.definition_requests.append(request)
            return self.definitions
        if path.startswith("/flags"):
            body = json.loads(request.content)
            self.flags_bodies.append(body)
            return self.flags_answer(body)
        return MockPostHog._ok(request)

    def called_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "$feature_flag_called"]


def client(server: FlagsServer, **options: Any) -> AsyncPostHog:
    options.setdefault("flush_interval", 60)
    options.setdefault("retry", fast_retry())
    options.setdefault("poll_interval", 3600)
    return AsyncPostHog(KEY, host="http://posthog.test", transport=server.transport, **options)


async def test_remote_flag_request_and_v2_answer() -> None:
    server = FlagsServer()
    async with client(server) as posthog:
        value = await posthog.get_feature_flag(
            "remote-flag",
            "u1",
            groups={"company": "c1"},
            person_properties={"plan": "pro"},
            group_properties={"company": {"size": 5}},
        )
        payload = await posthog.get_feature_flag_payload("remote-flag", "u1")
    assert value == "variant-b"
    assert payload == {"k": "remote-flag"}
    body = server.flags_bodies[0]
    assert body["token"] == KEY
    assert body["distinct_id"] == "u1"
    assert body["groups"] == {"company": "c1"}
    assert body["person_properties"] == {"plan": "pro"}
    assert body["group_properties"] == {"company": {"size": 5}}
    assert body["flag_keys_to_evaluate"] == ["remote-flag"]
    assert body["geoip_disable"] is True
    [called] = server.called_events()
    props = called["properties"]
    assert props["$feature_flag"] == "remote-flag"
    assert props["$feature_flag_response"] == "variant-b"
    assert props["$feature/remote-flag"] == "variant-b"
    assert props["locally_evaluated"] is False
    assert props["$feature_flag_request_id"] == "req-123"
    assert props["$feature_flag_id"] == 9 and props["$feature_flag_version"] == 2
    assert called["properties"]["$groups"] == {"company": "c1"}


async def test_legacy_answer_shape() -> None:
    server = FlagsServer()
    server.flags_answer = lambda body: httpx.Response(
        200,
        json={
            "featureFlags": {"old": True, "multi": "control"},
            "featureFlagPayloads": {"old": '{"a": 1}'},
        },
    )
    async with client(server) as posthog:
        assert await posthog.get_feature_flag("old", "u1") is True
        assert await posthog.get_feature_flag_payload("old", "u1") == {"a": 1}
        assert await posthog.get_all_flags("u1") == {"old": True, "multi": "control"}


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (httpx.Response(500), "api_error_500"),
        (httpx.Response(401, json={"detail": "bad token"}), "api_error_401"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "connection_error"),
        (httpx.Response(200, json=v2_answer({}, quotaLimited=["feature_flags"])), "quota_limited"),
        (httpx.Response(200, json=v2_answer({}, errorsWhileComputingFlags=True)), None),
        (httpx.Response(200, json=v2_answer({})), "flag_missing"),
    ],
)
async def test_failures_fall_back_and_record_the_error(reply: Any, code: str | None) -> None:
    server = FlagsServer()

    def answer(body: dict[str, Any]) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, httpx.Response)
        return reply

    server.flags_answer = answer
    async with client(server) as posthog:
        assert await posthog.get_feature_flag("f", "u1") is None
        assert await posthog.feature_enabled("f", "u1") is None
    [called] = server.called_events()
    error = called["properties"]["$feature_flag_error"]
    if code is None:
        assert error == "errors_while_computing_flags,flag_missing"
    else:
        assert error == code
    assert called["properties"]["$feature_flag_response"] is None


async def test_flags_retry_once_on_502_only() -> None:
    server = FlagsServer()
    replies = [httpx.Response(502), httpx.Response(200, json=v2_answer({"f": True}))]
    server.flags_answer = lambda body: replies.pop(0)
    async with client(server) as posthog:
        assert await posthog.get_feature_flag("f", "u1") is True
    assert len(server.flags_bodies) == 2

    server = FlagsServer()
    replies = [httpx.Response(503), httpx.Response(200, json=v2_answer({"f": True}))]
    server.flags_answer = lambda body: replies.pop(0)
    async with client(server) as posthog:
        assert await posthog.get_feature_flag("f", "u1") is None
    assert len(server.flags_bodies) == 1


async def test_debug_mode_raises() -> None:
    server = FlagsServer()
    server.flags_answer = lambda body: httpx.Response(500)
    async with client(server, debug=True) as posthog:
        with pytest.raises(Exception, match="500"):
            await posthog.get_feature_flag("f", "u1")


async def test_flag_called_sent_once_per_user_value_and_groups() -> None:
    server = FlagsServer()
    async with client(server) as posthog:
        for _ in range(3):
            await posthog.get_feature_flag("remote-flag", "u1")
        await posthog.get_feature_flag("remote-flag", "u2")
        await posthog.get_feature_flag("remote-flag", "u1", groups={"company": "c1"})
        await posthog.get_feature_flag("remote-flag", "u1", send_feature_flag_events=False)
        await posthog.get_feature_flag("remote-flag", "u3", send_feature_flag_events=False)
    called = server.called_events()
    assert [(e["distinct_id"], e["properties"].get("$groups")) for e in called] == [
        ("u1", None),
        ("u2", None),
        ("u1", {"company": "c1"}),
    ]


async def test_concurrent_identical_calls_make_one_request() -> None:
    server = FlagsServer()
    gate = asyncio.Event()
    original = server.transport

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/flags"):
            await gate.wait()
        return server.handler(request)

    async with AsyncPostHog(
        KEY, host="http://posthog.test", transport=httpx.MockTransport(slow), flush_interval=60
    ) as posthog:
        calls = [
            asyncio.create_task(posthog.get_feature_flag("remote-flag", "u1")) for _ in range(1000)
        ]
        await asyncio.sleep(0.05)
        gate.set()
        values = await asyncio.gather(*calls)
    assert original is not None
    assert values == ["variant-b"] * 1000
    assert len(server.flags_bodies) == 1
    assert len(server.called_events()) == 1


async def test_flag_cache_ttl_reuses_answers() -> None:
    server = FlagsServer()
    async with client(server, flag_cache_ttl=60) as posthog:
        for _ in range(5):
            assert await posthog.get_feature_flag("remote-flag", "u1") == "variant-b"
        await posthog.get_feature_flag("remote-flag", "u2")
    assert len(server.flags_bodies) == 2


async def test_local_evaluation_makes_no_flags_calls() -> None:
    server = FlagsServer()
    async with client(server, personal_api_key=PERSONAL) as posthog:
        assert await posthog.load_feature_flags() is True
        assert posthog.feature_flag_definitions == DEFINITIONS
        for _ in range(5):
            assert await posthog.feature_enabled("beta", "u1") is True
            assert await posthog.get_feature_flag(
                "pro-only", "u1", person_properties={"plan": "pro"}
            )
            assert (
                await posthog.get_feature_flag("pro-only", "u1", person_properties={"plan": "free"})
                is False
            )
        payload = await posthog.get_feature_flag_payload(
            "pro-only", "u1", person_properties={"plan": "pro"}
        )
        health = await posthog.health(probe=False)
    assert payload == {"limit": 10}
    assert server.flags_bodies == []
    request = server.definition_requests[0]
    assert request.headers["authorization"] == f"Bearer {PERSONAL}"
    assert request.url.params["token"] == KEY
    assert "send_cohorts" in request.url.params
    called = server.called_events()
    assert {e["properties"]["locally_evaluated"] for e in called} == {True}
    beta = next(e for e in called if e["properties"]["$feature_flag"] == "beta")
    assert beta["properties"]["$feature_flag_version"] == 3
    assert health.flag_definitions_age is not None and health.flag_definitions_age < 5


async def test_inconclusive_local_falls_back_to_remote_unless_local_only() -> None:
    server = FlagsServer()
    server.flags_answer = lambda body: httpx.Response(200, json=v2_answer({"pro-only": True}))
    async with client(server, personal_api_key=PERSONAL) as posthog:
        await posthog.load_feature_flags()
        # no `plan` property: the engine cannot decide locally
        assert await posthog.get_feature_flag("pro-only", "u1") is True
        assert await posthog.get_feature_flag("pro-only", "u2", only_evaluate_locally=True) is None
    assert len(server.flags_bodies) == 1
    assert server.flags_bodies[0]["flag_keys_to_evaluate"] == ["pro-only"]


async def test_get_all_flags_merges_local_with_one_remote_call() -> None:
    server = FlagsServer()
    server.flags_answer = lambda body: httpx.Response(
        200, json=v2_answer(dict.fromkeys(body["flag_keys_to_evaluate"], "remote"))
    )
    async with client(server, personal_api_key=PERSONAL) as posthog:
        await posthog.load_feature_flags()
        flags = await posthog.get_all_flags("u1")
        local_only = await posthog.get_all_flags("u1", only_evaluate_locally=True)
        both = await posthog.get_all_flags_and_payloads("u1", person_properties={"plan": "pro"})
    assert flags == {"beta": True, "pro-only": "remote"}
    assert local_only == {"beta": True}
    assert both == {
        "featureFlags": {"beta": True, "pro-only": True},
        "featureFlagPayloads": {"pro-only": {"limit": 10}},
    }
    assert len(server.flags_bodies) == 1
    assert server.called_events() == []


async def test_evaluate_flags_snapshot_and_capture_with_flags() -> None:
    server = FlagsServer()
    async with client(server, personal_api_key=PERSONAL) as posthog:
        await posthog.load_feature_flags()
        flags = await posthog.evaluate_flags("u1", person_properties={"plan": "pro"})
        assert flags.is_enabled("beta")
        assert flags.get_flag("pro-only") is True
        assert flags.get_flag_payload("pro-only") == {"limit": 10}
        assert flags.get_flag("nope") is None
        await posthog.capture("checkout", "u1", flags=flags)
    checkout = next(e for e in server.events if e["event"] == "checkout")
    assert checkout["properties"]["$feature/beta"] is True
    assert checkout["properties"]["$active_feature_flags"] == ["beta", "pro-only"]
    called = {e["properties"]["$feature_flag"]: e for e in server.called_events()}
    assert set(called) == {"beta", "pro-only", "nope"}
    assert called["nope"]["properties"]["$feature_flag_error"] == "flag_missing"
    assert server.flags_bodies == []


async def test_poller_etag_304_and_legacy_fallback() -> None:
    server = FlagsServer()
    async with client(server, personal_api_key=PERSONAL) as posthog:
        assert await posthog.load_feature_flags()
        server.definitions = httpx.Response(304)
        assert await posthog.load_feature_flags()
        assert server.definition_requests[1].headers["if-none-match"] == '"v1"'
        assert await posthog.feature_enabled("beta", "u1", only_evaluate_locally=True)

    server = FlagsServer()
    answers = [httpx.Response(404), httpx.Response(200, json=DEFINITIONS)]
    server.definitions = answers[0]

    def legacy(request: httpx.Request) -> httpx.Response:
        server.definition_requests.append(request)
        return answers.pop(0) if answers else httpx.Response(200, json=DEFINITIONS)

    server.default = lambda request: (
        legacy(request)
        if "feature_flag" in request.url.path or "definitions" in request.url.path
        else server.route(request)
    )
    async with client(server, personal_api_key=PERSONAL) as posthog:
        assert await posthog.load_feature_flags()
    paths = [r.url.path for r in server.definition_requests]
    assert paths[:2] == ["/flags/definitions", "/api/feature_flag/local_evaluation/"]
    assert set(paths[2:]) <= {"/api/feature_flag/local_evaluation/"}  # it stays on the legacy path


async def test_poller_401_stops_402_clears_500_keeps_stale() -> None:
    server = FlagsServer()
    async with client(server, personal_api_key=PERSONAL) as posthog:
        assert await posthog.load_feature_flags()
        server.definitions = httpx.Response(500)
        assert not await posthog.load_feature_flags()
        assert await posthog.feature_enabled("beta", "u1", only_evaluate_locally=True)
        health = await posthog.health(probe=False)
        assert health.flag_definitions_error is not None
        server.definitions = httpx.Response(402)
        assert not await posthog.load_feature_flags()
        assert posthog.feature_flag_definitions is None
        assert await posthog.feature_enabled("beta", "u1", only_evaluate_locally=True) is None
        server.definitions = httpx.Response(401)
        assert not await posthog.load_feature_flags()
        count = len(server.definition_requests)
        assert not await posthog.load_feature_flags()  # stopped: no more requests
        assert len(server.definition_requests) == count


async def test_load_feature_flags_without_key_is_a_usage_error() -> None:
    server = FlagsServer()
    async with client(server) as posthog:
        with pytest.raises(UsageError, match="personal_api_key"):
            await posthog.load_feature_flags()


async def test_bad_arguments() -> None:
    server = FlagsServer()
    async with client(server) as posthog:
        with pytest.raises(UsageError):
            await posthog.get_feature_flag("", "u1")
        with pytest.raises(UsageError):
            await posthog.get_feature_flag("f", None)


async def test_disabled_client_flags() -> None:
    async with AsyncPostHog(disabled=True) as posthog:
        assert await posthog.get_feature_flag("f", "u1") is None
        assert await posthog.get_all_flags("u1") == {}
        assert len(await posthog.evaluate_flags("u1")) == 0


async def test_remote_config_payload() -> None:
    server = FlagsServer()
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        if "remote_config" in request.url.path:
            seen.append(request)
            return httpx.Response(200, json=json.dumps({"theme": "dark"}))
        return server.route(request)

    server.default = route
    async with client(server, personal_api_key=PERSONAL) as posthog:
        assert await posthog.get_remote_config_payload("site-config") == {"theme": "dark"}
    assert seen[0].url.path == "/api/projects/@current/feature_flags/site-config/remote_config"
    assert seen[0].headers["authorization"] == f"Bearer {PERSONAL}"
    assert seen[0].url.params["token"] == KEY
