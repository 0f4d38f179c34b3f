"""Feature flags against LocalPostHog over real sockets, and a fleet sharing Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from aioposthog import AsyncPostHog
from aioposthog.testing import LocalPostHog

pytestmark = pytest.mark.integration

KEY = "phc_flags_e2e"
SECURE = "phs_flags_e2e"

DEFINITIONS: dict[str, Any] = {
    "flags": [
        {
            "id": 1,
            "key": "new-checkout",
            "active": True,
            "version": 1,
            "filters": {"groups": [{"properties": [], "rollout_percentage": 50}]},
        },
        {
            "id": 2,
            "key": "pricing-test",
            "active": True,
            "version": 4,
            "filters": {
                "groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {
                    "variants": [
                        {"key": "control", "rollout_percentage": 50},
                        {"key": "test", "rollout_percentage": 50},
                    ]
                },
                "payloads": {"test": '{"price": 9}', "control": '{"price": 10}'},
            },
        },
        {
            "id": 3,
            "key": "enterprise",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [{"key": "plan", "value": "enterprise", "operator": "exact"}],
                        "rollout_percentage": 100,
                    }
                ]
            },
        },
        {
            "id": 4,
            "key": "company-beta",
            "active": True,
            "filters": {
                "aggregation_group_type_index": 0,
                "groups": [{"properties": [], "rollout_percentage": 100}],
            },
        },
        {"id": 5, "key": "off", "active": False, "filters": {"groups": []}},
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}


async def test_local_evaluation_makes_no_flags_requests() -> None:
    async with LocalPostHog(api_key=KEY) as server:
        server.set_flag_definitions(DEFINITIONS)
        async with AsyncPostHog(
            KEY, host=server.url, personal_api_key=SECURE, poll_interval=3600
        ) as posthog:
            assert await posthog.load_feature_flags()
            seen = set()
            for request in range(100):
                user = f"user-{request}"
                snapshot = await posthog.evaluate_flags(
                    user,
                    person_properties={"plan": "enterprise" if request % 2 else "free"},
                    groups={"company": "acme"},
                )
                seen.add(snapshot.get_flag("new-checkout"))
                assert snapshot.get_flag("pricing-test") in ("control", "test")
                assert snapshot.is_enabled("enterprise") == bool(request % 2)
                assert snapshot.is_enabled("company-beta")
                assert snapshot.get_flag("off") is False
                await posthog.capture("checkout viewed", user, flags=snapshot)
            assert seen == {True, False}  # the 50% rollout splits the users
        assert server.flags_requests == 0
        assert server.definitions_requests >= 1
        await server.wait_for_events(100, timeout=10)
        events = server.events
    called = [e for e in events if e["event"] == "$feature_flag_called"]
    assert called and all(e["properties"]["locally_evaluated"] for e in called)
    viewed = [e for e in events if e["event"] == "checkout viewed"]
    assert len(viewed) == 100
    assert all("$feature/pricing-test" in e["properties"] for e in viewed)


async def test_remote_flags_round_trip_and_server_side_properties() -> None:
    async with LocalPostHog(api_key=KEY) as server:
        server.set_flag_definitions(DEFINITIONS)
        server.set_person_properties("stored-user", {"plan": "enterprise"})
        async with AsyncPostHog(KEY, host=server.url) as posthog:
            # no personal key: everything is evaluated by the server
            assert await posthog.feature_enabled("enterprise", "stored-user") is True
            assert await posthog.feature_enabled("enterprise", "other-user") is False
            variant = await posthog.get_feature_flag("pricing-test", "u1")
            payload = await posthog.get_feature_flag_payload("pricing-test", "u1")
            assert payload == {"price": 9 if variant == "test" else 10}
            everything = await posthog.get_all_flags("u1", groups={"company": "acme"})
        assert server.flags_requests == 5
    assert everything["pricing-test"] == variant
    assert everything["company-beta"] is True
    assert everything["off"] is False


async def test_remote_and_local_agree() -> None:
    users = [f"u{i}" for i in range(200)]
    async with LocalPostHog(api_key=KEY) as server:
        server.set_flag_definitions(DEFINITIONS)
        async with AsyncPostHog(KEY, host=server.url) as remote:
            remote_values = [
                await remote.get_all_flags(u, person_properties={"plan": "free"}) for u in users
            ]
        async with AsyncPostHog(
            KEY, host=server.url, personal_api_key=SECURE, poll_interval=3600
        ) as local:
            await local.load_feature_flags()
            local_values = [
                await local.get_all_flags(
                    u, person_properties={"plan": "free"}, only_evaluate_locally=True
                )
                for u in users
            ]
    # company-beta needs a group: remote answers False, local leaves it undecided-false too
    for remote_flags, local_flags in zip(remote_values, local_values, strict=True):
        for key in ("new-checkout", "pricing-test", "enterprise", "off"):
            assert remote_flags[key] == local_flags[key]


async def test_flags_outage_falls_back_and_stale_definitions_keep_serving() -> None:
    async with LocalPostHog(api_key=KEY) as server:
        server.set_flag_definitions(DEFINITIONS)
        async with AsyncPostHog(
            KEY, host=server.url, personal_api_key=SECURE, poll_interval=3600
        ) as posthog:
            assert await posthog.load_feature_flags()
            server.fail_next(1, status=503, group="definitions")
            assert not await posthog.load_feature_flags()
            assert await posthog.feature_enabled("company-beta", "u1", groups={"company": "a"})
            server.fail_next(2, status=502, group="flags")
            # undecidable locally (no plan), and /flags fails twice: the documented fallback
            assert await posthog.get_feature_flag("enterprise", "u1") is None
            health = await posthog.health(probe=False)
            await posthog.flush()
        await server.wait_for_events(2)
        called = [e for e in server.events if e["event"] == "$feature_flag_called"]
    assert health.flag_definitions_age is not None
    assert health.flag_definitions_error is not None
    errors = {
        e["properties"]["$feature_flag"]: e["properties"].get("$feature_flag_error") for e in called
    }
    assert errors == {"company-beta": None, "enterprise": "api_error_502"}


async def test_a_fleet_sharing_redis_polls_posthog_once(redis_url: str) -> None:
    token = f"phc_fleet_{uuid.uuid4().hex[:8]}"
    async with LocalPostHog(api_key=token) as server:
        server.set_flag_definitions(DEFINITIONS)
        options: dict[str, Any] = {
            "host": server.url,
            "personal_api_key": SECURE,
            "cache_url": redis_url,
            "poll_interval": 0.2,
        }
        workers = [AsyncPostHog(token, **options) for _ in range(4)]
        for worker in workers:
            await worker.start()
        try:
            await asyncio.sleep(1.2)  # about six poll periods
            values = [
                await worker.get_feature_flag("pricing-test", "u1", only_evaluate_locally=True)
                for worker in workers
            ]
            polls = server.definitions_requests
        finally:
            for worker in workers:
                await worker.aclose()
    assert len(set(values)) == 1 and values[0] in ("control", "test")
    # one leader polls every period; the three followers read Redis and never ask PostHog
    assert 1 <= polls <= 8


async def test_closing_with_a_poll_in_flight_leaks_no_socket() -> None:
    # The first definitions poll starts with the client; closing a turn or two later used to
    # leave that poll running past the HTTP pool, and the server leaked the half-accepted
    # socket. Leaked sockets surface as ResourceWarnings, errors under this suite's settings.
    import gc

    for turns in (0, 1, 2, 3):
        with LocalPostHog(api_key=KEY) as server:
            async with AsyncPostHog(
                KEY, host=server.url, personal_api_key=SECURE, poll_interval=3600, send=False
            ):
                for _ in range(turns):
                    await asyncio.sleep(0)
        gc.collect()
