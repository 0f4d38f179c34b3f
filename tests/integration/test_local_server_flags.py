"""LocalPostHog's feature-flag endpoints over real loopback sockets.

Definitions (ETag, 304, legacy path), `/flags` (v2 and legacy shapes, server-side knowledge,
test switches), remote config, authentication, fault injection, and the official `posthog`
client loading definitions from it and asking it for flags.
"""

from __future__ import annotations

import atexit
import gzip
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import posthog
import pytest

from aioposthog._flags import FlagEngine, compile_definitions
from aioposthog.testing import LocalPostHog

pytestmark = pytest.mark.integration

TOKEN = "phc_test"
SECRET = "phs_test"
AUTH = {"authorization": f"Bearer {SECRET}"}
DEFS_URL = f"/flags/definitions?token={TOKEN}&send_cohorts"
LEGACY_URL = f"/api/feature_flag/local_evaluation/?token={TOKEN}&send_cohorts"


def everyone(**extra: Any) -> dict[str, Any]:
    return {"groups": [{"properties": [], "rollout_percentage": 100}], **extra}


DEFINITIONS: dict[str, Any] = {
    "flags": [
        {
            "id": 1,
            "key": "beta",
            "active": True,
            "version": 3,
            "filters": everyone(payloads={"true": '{"color": "blue"}'}),
        },
        {
            "id": 2,
            "key": "pro",
            "active": True,
            "version": 1,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {"key": "plan", "type": "person", "operator": "exact", "value": ["pro"]}
                        ],
                        "rollout_percentage": 100,
                    }
                ]
            },
        },
        {
            "id": 3,
            "key": "experiment",
            "active": True,
            "version": 2,
            "filters": everyone(
                multivariate={
                    "variants": [
                        {"key": "control", "rollout_percentage": 50},
                        {"key": "test", "rollout_percentage": 50},
                    ]
                },
                payloads={"control": '{"v": 0}', "test": '{"v": 1}'},
            ),
        },
        {
            "id": 4,
            "key": "big-company",
            "active": True,
            "version": 1,
            "filters": {
                "aggregation_group_type_index": 0,
                "groups": [
                    {
                        "properties": [
                            {
                                "key": "size",
                                "type": "group",
                                "group_type_index": 0,
                                "operator": "gt",
                                "value": 100,
                            }
                        ],
                        "rollout_percentage": 100,
                    }
                ],
            },
        },
        {"id": 5, "key": "off", "active": False, "version": 1, "filters": everyone()},
        {
            "id": 6,
            "key": "vip",
            "active": True,
            "version": 1,
            "filters": {
                "groups": [
                    {
                        "properties": [{"key": "id", "type": "cohort", "value": 42}],
                        "rollout_percentage": 100,
                    }
                ]
            },
        },
        {
            "id": 7,
            "key": "theme",
            "active": True,
            "version": 1,
            "is_remote_configuration": True,
            "filters": everyone(payloads={"true": '{"mode": "dark"}'}),
        },
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}


@pytest.fixture
async def server() -> AsyncIterator[LocalPostHog]:
    async with LocalPostHog() as srv:
        srv.set_flag_definitions(DEFINITIONS)
        yield srv


@pytest.fixture
async def client(server: LocalPostHog) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


async def ask(client: httpx.AsyncClient, version: str | None = "2", **body: Any) -> dict[str, Any]:
    path = "/flags/" if version is None else f"/flags/?v={version}"
    response = await client.post(path, json={"token": TOKEN, "distinct_id": "user-1", **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def expected_variant(distinct_id: str) -> str:
    value = FlagEngine(compile_definitions(DEFINITIONS)).evaluate("experiment", distinct_id).value
    assert isinstance(value, str)
    return value


# --- definitions ---------------------------------------------------------------------------


async def test_definitions_etag_and_304(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    first = await client.get(DEFS_URL, headers=AUTH)
    assert first.status_code == 200
    assert first.json() == server.flag_definitions
    assert [f["key"] for f in first.json()["flags"]] == [f["key"] for f in DEFINITIONS["flags"]]
    etag = first.headers["etag"]
    assert etag == server.flag_definitions_etag

    again = await client.get(DEFS_URL, headers={**AUTH, "if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag

    stale = await client.get(DEFS_URL, headers={**AUTH, "if-none-match": '"other"'})
    assert stale.status_code == 200
    assert server.definitions_requests == 3
    records = [r for r in server.requests if r.group == "definitions"]
    assert [r.status for r in records] == [200, 304, 200]
    assert records[0].token == TOKEN


async def test_etag_changes_only_with_the_definitions(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    etag = server.flag_definitions_etag
    server.set_flag_definitions(json.loads(json.dumps(DEFINITIONS)))
    assert server.flag_definitions_etag == etag

    changed = {**DEFINITIONS, "flags": DEFINITIONS["flags"][:1]}
    server.set_flag_definitions(changed)
    assert server.flag_definitions_etag != etag
    response = await client.get(DEFS_URL, headers={**AUTH, "if-none-match": etag})
    assert response.status_code == 200
    assert [f["key"] for f in response.json()["flags"]] == ["beta"]

    server.clear_flag_definitions()
    assert server.flag_definitions == {"flags": [], "group_type_mapping": {}, "cohorts": {}}
    assert (await ask(client))["flags"] == {}


async def test_definitions_keep_extra_keys_and_are_copied(server: LocalPostHog) -> None:
    payload = {**DEFINITIONS, "property_matching_version": 2}
    server.set_flag_definitions(payload)
    payload["flags"] = []
    assert server.flag_definitions["property_matching_version"] == 2
    assert len(server.flag_definitions["flags"]) == len(DEFINITIONS["flags"])
    with pytest.raises(ValueError, match="not JSON"):
        server.set_flag_definitions({"flags": [{"key": "x", "bad": object()}]})
    with pytest.raises(ValueError, match="'flags' must be a list"):
        server.set_flag_definitions({"flags": {}})


async def test_legacy_path_and_legacy_only_switch(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    for url in (LEGACY_URL, LEGACY_URL.replace("local_evaluation/", "local_evaluation")):
        response = await client.get(url, headers=AUTH)
        assert response.status_code == 200
        assert response.json() == server.flag_definitions
        assert response.headers["etag"] == server.flag_definitions_etag

    server.definitions_legacy_only = True
    assert (await client.get(DEFS_URL, headers=AUTH)).status_code == 404
    assert (await client.get(LEGACY_URL, headers=AUTH)).status_code == 200
    server.definitions_legacy_only = False
    assert (await client.get(DEFS_URL, headers=AUTH)).status_code == 200
    # Without `send_cohorts` PostHog would inline cohorts; LocalPostHog sends the same payload.
    plain = await client.get(f"/flags/definitions?token={TOKEN}", headers=AUTH)
    assert plain.json() == server.flag_definitions


async def test_definitions_authentication(client: httpx.AsyncClient) -> None:
    assert (await client.get(DEFS_URL)).status_code == 401
    assert (await client.get(DEFS_URL, headers={"authorization": "Bearer nope"})).status_code == 401
    forbidden = await client.get(DEFS_URL, headers={"authorization": f"Bearer {TOKEN}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "permission_denied"
    assert (await client.get("/flags/definitions", headers=AUTH)).status_code == 400
    personal = {"authorization": "Bearer phx_personal"}
    assert (await client.get(DEFS_URL, headers=personal)).status_code == 200


async def test_configured_keys_are_enforced() -> None:
    async with (
        LocalPostHog(api_key=TOKEN, personal_api_key=SECRET) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        assert server.personal_api_key == SECRET
        assert (await client.get(DEFS_URL, headers=AUTH)).status_code == 200
        wrong_secret = {"authorization": "Bearer phs_other"}
        assert (await client.get(DEFS_URL, headers=wrong_secret)).status_code == 401
        other_project = DEFS_URL.replace(TOKEN, "phc_other")
        assert (await client.get(other_project, headers=AUTH)).status_code == 401
        flags = await client.post("/flags/?v=2", json={"token": "phc_other", "distinct_id": "u"})
        assert flags.status_code == 401
        remote = await client.get(
            "/api/projects/@current/feature_flags/x/remote_config?token=phc_other", headers=AUTH
        )
        assert remote.status_code == 401


# --- /flags --------------------------------------------------------------------------------


async def test_flags_v2_boolean_flag(client: httpx.AsyncClient) -> None:
    answer = await ask(client, flag_keys_to_evaluate=["beta"])
    assert answer["flags"] == {
        "beta": {
            "key": "beta",
            "enabled": True,
            "variant": None,
            "reason": {
                "code": "condition_match",
                "condition_index": 0,
                "description": "Matched condition set 1",
            },
            "metadata": {
                "id": 1,
                "version": 3,
                "description": None,
                "payload": '{"color": "blue"}',
            },
            "failed": False,
        }
    }
    assert answer["errorsWhileComputingFlags"] is False
    assert isinstance(answer["requestId"], str) and len(answer["requestId"]) == 36
    assert isinstance(answer["evaluatedAt"], int)


async def test_flags_legacy_shape(client: httpx.AsyncClient) -> None:
    for version in (None, "1"):
        answer = await ask(client, version)
        assert answer["featureFlags"] == {
            "beta": True,
            "pro": False,
            "experiment": expected_variant("user-1"),
            "big-company": False,
            "off": False,
            "vip": False,
            "theme": True,
        }
        variant = expected_variant("user-1")
        assert answer["featureFlagPayloads"] == {
            "beta": '{"color": "blue"}',
            "experiment": f'{{"v": {int(variant == "test")}}}',
            "theme": '{"mode": "dark"}',
        }
        assert answer["errorsWhileComputingFlags"] is False
        assert "flags" not in answer


async def test_flags_multivariate_with_payloads(client: httpx.AsyncClient) -> None:
    seen = set()
    for user in ("user-1", "user-2", "user-3", "user-4", "user-5", "user-6"):
        answer = await ask(client, distinct_id=user, flag_keys_to_evaluate=["experiment"])
        record = answer["flags"]["experiment"]
        variant = expected_variant(user)
        assert record["enabled"] is True
        assert record["variant"] == variant
        assert json.loads(record["metadata"]["payload"]) == {"v": int(variant == "test")}
        seen.add(variant)
    assert seen == {"control", "test"}


async def test_flags_inactive_flag_is_listed_disabled(client: httpx.AsyncClient) -> None:
    record = (await ask(client, flag_keys_to_evaluate=["off"]))["flags"]["off"]
    assert record["enabled"] is False
    assert record["reason"]["code"] == "flag_disabled"
    assert record["metadata"]["payload"] is None


async def test_flags_group_flag(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    keys = ["big-company"]
    no_group = (await ask(client, flag_keys_to_evaluate=keys))["flags"]["big-company"]
    assert (no_group["enabled"], no_group["reason"]["code"]) == (False, "no_group_type")

    passed = await ask(
        client,
        flag_keys_to_evaluate=keys,
        groups={"company": "acme"},
        group_properties={"company": {"size": 500}},
    )
    assert passed["flags"]["big-company"]["enabled"] is True

    unknown = await ask(client, flag_keys_to_evaluate=keys, groups={"company": "acme"})
    assert unknown["flags"]["big-company"]["enabled"] is False

    server.set_group_properties("company", "acme", {"size": 500})
    stored = await ask(client, flag_keys_to_evaluate=keys, groups={"company": "acme"})
    assert stored["flags"]["big-company"]["enabled"] is True
    overridden = await ask(
        client,
        flag_keys_to_evaluate=keys,
        groups={"company": "acme"},
        group_properties={"company": {"size": 3}},
    )
    assert overridden["flags"]["big-company"]["enabled"] is False
    other = await ask(client, flag_keys_to_evaluate=keys, groups={"company": "initech"})
    assert other["flags"]["big-company"]["enabled"] is False


async def test_flag_keys_to_evaluate(client: httpx.AsyncClient) -> None:
    answer = await ask(client, flag_keys_to_evaluate=["beta", "no-such-flag", "off"])
    assert set(answer["flags"]) == {"beta", "off"}
    assert (await ask(client, flag_keys_to_evaluate=[]))["flags"] == {}
    everything = await ask(client)
    assert set(everything["flags"]) == {f["key"] for f in DEFINITIONS["flags"]}


async def test_person_properties_stored_versus_passed(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    keys = ["pro"]
    unknown = (await ask(client, flag_keys_to_evaluate=keys))["flags"]["pro"]
    assert unknown["enabled"] is False
    assert unknown["reason"]["code"] == "no_condition_match"

    passed = await ask(client, flag_keys_to_evaluate=keys, person_properties={"plan": "pro"})
    assert passed["flags"]["pro"]["enabled"] is True

    server.set_person_properties("user-1", {"plan": "pro"})
    stored = await ask(client, flag_keys_to_evaluate=keys)
    assert stored["flags"]["pro"]["enabled"] is True
    overridden = await ask(client, flag_keys_to_evaluate=keys, person_properties={"plan": "free"})
    assert overridden["flags"]["pro"]["enabled"] is False
    someone_else = await ask(client, distinct_id="user-2", flag_keys_to_evaluate=keys)
    assert someone_else["flags"]["pro"]["enabled"] is False

    server.reset_flag_state()
    assert (await ask(client, flag_keys_to_evaluate=keys))["flags"]["pro"]["enabled"] is False


async def test_static_cohort_members(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    assert (await ask(client, flag_keys_to_evaluate=["vip"]))["flags"]["vip"]["enabled"] is False
    server.set_cohort_members(42, ["user-1"])
    member = await ask(client, flag_keys_to_evaluate=["vip"])
    assert member["flags"]["vip"]["enabled"] is True
    outsider = await ask(client, distinct_id="user-2", flag_keys_to_evaluate=["vip"])
    assert outsider["flags"]["vip"]["enabled"] is False


async def test_flags_decides_what_local_evaluation_leaves_to_the_server(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    server.set_flag_definitions(
        {
            "flags": [
                {
                    "key": "sticky",
                    "active": True,
                    "ensure_experience_continuity": True,
                    "filters": everyone(),
                },
                {
                    "key": "per-device",
                    "active": True,
                    "bucketing_identifier": "device_id",
                    "filters": everyone(),
                },
                {
                    "key": "broken",
                    "active": True,
                    "filters": {"groups": [{"properties": [], "rollout_percentage": "abc"}]},
                },
                {"key": "gone", "active": True, "deleted": True, "filters": everyone()},
            ]
        }
    )
    answer = await ask(client)
    assert set(answer["flags"]) == {"sticky", "per-device", "broken"}
    assert answer["flags"]["sticky"]["enabled"] is True
    no_device = answer["flags"]["per-device"]
    assert (no_device["enabled"], no_device["reason"]["code"]) == (False, "no_condition_match")
    assert (answer["flags"]["broken"]["failed"], answer["errorsWhileComputingFlags"]) == (
        True,
        True,
    )
    with_device = await ask(client, device_id="device-1", flag_keys_to_evaluate=["per-device"])
    assert with_device["flags"]["per-device"]["enabled"] is True
    assert with_device["errorsWhileComputingFlags"] is False


async def test_quota_limited(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    server.flags_quota_limited = True
    answer = await ask(client)
    assert answer["flags"] == {}
    assert answer["quotaLimited"] == ["feature_flags"]
    legacy = await ask(client, None)
    assert (legacy["featureFlags"], legacy["quotaLimited"]) == ({}, ["feature_flags"])
    server.flags_quota_limited = False
    assert "quotaLimited" not in await ask(client)


async def test_errors_while_computing_flags(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    server.flags_errors_while_computing = True
    answer = await ask(client, flag_keys_to_evaluate=["beta"])
    assert answer["errorsWhileComputingFlags"] is True
    assert answer["flags"]["beta"]["enabled"] is True
    assert (await ask(client, None))["errorsWhileComputingFlags"] is True


async def test_failed_flag(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    server.fail_flag("beta")
    answer = await ask(client, flag_keys_to_evaluate=["beta", "off"])
    assert answer["errorsWhileComputingFlags"] is True
    failed = answer["flags"]["beta"]
    assert (failed["failed"], failed["enabled"], failed["metadata"]["payload"]) == (
        True,
        False,
        None,
    )
    assert answer["flags"]["off"]["failed"] is False
    legacy = await ask(client, None)
    assert "beta" not in legacy["featureFlags"]
    assert "beta" not in legacy["featureFlagPayloads"]
    assert legacy["errorsWhileComputingFlags"] is True


async def test_flags_request_errors(client: httpx.AsyncClient) -> None:
    missing_token = await client.post("/flags/?v=2", json={"distinct_id": "u"})
    assert missing_token.status_code == 401
    bad_json = await client.post("/flags/?v=2", content=b"{nope")
    assert bad_json.status_code == 400
    no_id = await client.post("/flags/?v=2", json={"token": TOKEN})
    assert no_id.status_code == 400
    assert no_id.json()["code"] == "missing_distinct_id"
    bad_keys = await client.post(
        "/flags?v=2", json={"token": TOKEN, "distinct_id": "u", "flag_keys_to_evaluate": "beta"}
    )
    assert bad_keys.status_code == 400


async def test_flags_gzip_body_and_api_key_field(client: httpx.AsyncClient) -> None:
    body = gzip.compress(json.dumps({"api_key": TOKEN, "distinct_id": "user-1"}).encode())
    response = await client.post(
        "/flags?v=2",
        content=body,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["flags"]["beta"]["enabled"] is True


# --- remote config -------------------------------------------------------------------------


async def test_remote_config(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    url = f"/api/projects/@current/feature_flags/theme/remote_config?token={TOKEN}"
    response = await client.get(url, headers=AUTH)
    assert response.status_code == 200
    # PostHog sends the stored payload (a JSON text) JSON-encoded: the body is a JSON string.
    assert response.json() == '{"mode": "dark"}'
    by_id = await client.get(url.replace("@current", "12345"), headers=AUTH)
    assert by_id.json() == '{"mode": "dark"}'

    unknown = url.replace("theme", "nope")
    assert (await client.get(unknown, headers=AUTH)).status_code == 404
    not_remote = url.replace("theme", "beta")
    assert (await client.get(not_remote, headers=AUTH)).status_code == 404
    assert (await client.get(url)).status_code == 401
    no_token = url.partition("?")[0]
    assert (await client.get(no_token, headers=AUTH)).status_code == 400
    assert server.remote_config_requests == 6


# --- faults --------------------------------------------------------------------------------


async def test_fault_injection_groups(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    server.fail_next(1, 500, group="flags")
    server.fail_next(1, 429, headers={"Retry-After": "3"}, group="definitions")
    server.fail_next(1, 503, group="remote_config")

    failed = await client.post("/flags/?v=2", json={"token": TOKEN, "distinct_id": "u"})
    assert failed.status_code == 500
    assert (await ask(client))["flags"]["beta"]["enabled"] is True

    throttled = await client.get(DEFS_URL, headers=AUTH)
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")
    assert (await client.get(DEFS_URL, headers=AUTH)).status_code == 200

    remote = f"/api/projects/@current/feature_flags/theme/remote_config?token={TOKEN}"
    assert (await client.get(remote, headers=AUTH)).status_code == 503
    assert (await client.get(remote, headers=AUTH)).status_code == 200

    assert server.pending_faults == 0
    assert (server.flags_requests, server.definitions_requests) == (2, 2)
    faults = [(r.group, r.status) for r in server.requests if r.fault]
    assert faults == [("flags", 500), ("definitions", 429), ("remote_config", 503)]

    server.fail_next(1, disconnect=True, group="flags")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/flags/?v=2", json={"token": TOKEN, "distinct_id": "u"})


async def test_delay_applies_to_flags(server: LocalPostHog) -> None:
    server.set_delay(2.0, group="flags")
    async with httpx.AsyncClient(base_url=server.url, timeout=0.2) as slow:
        with pytest.raises(httpx.ReadTimeout):
            await slow.post("/flags/?v=2", json={"token": TOKEN, "distinct_id": "u"})
        server.set_delay(0, group="flags")
        response = await slow.post("/flags/?v=2", json={"token": TOKEN, "distinct_id": "u"})
        assert response.status_code == 200


async def test_many_flags_requests(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    for i in range(200):
        answer = await ask(client, distinct_id=f"user-{i}")
        assert answer["flags"]["beta"]["enabled"] is True
    assert server.flags_requests == 200


# --- the official client -------------------------------------------------------------------


@pytest.fixture
def sync_server() -> Iterator[LocalPostHog]:
    with LocalPostHog() as srv:
        srv.set_flag_definitions(DEFINITIONS)
        yield srv


def official(url: str, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "sync_mode": True,
        "disable_geoip": True,
        "enable_exception_autocapture": False,
        "feature_flags_request_max_retries": 0,
        "metrics": None,
        "traces": None,
        "max_retries": 0,
        "timeout": 5,
    }
    settings.update(options)
    return posthog.Posthog(TOKEN, host=url, **settings)


def close_official(client: Any) -> None:
    client.shutdown()
    atexit.unregister(client._atexit)


def test_official_client_evaluates_locally(sync_server: LocalPostHog) -> None:
    # `secret_key` is the 7.x name of `personal_api_key` (which warns it is deprecated).
    client = official(sync_server.url, secret_key=SECRET, poll_interval=3600)
    try:
        client.load_feature_flags()
        assert sync_server.definitions_requests == 1
        with pytest.deprecated_call():
            beta = client.get_feature_flag(
                "beta", "user-1", only_evaluate_locally=True, send_feature_flag_events=False
            )
        with pytest.deprecated_call():
            variant = client.get_feature_flag(
                "experiment", "user-1", only_evaluate_locally=True, send_feature_flag_events=False
            )
        assert (beta, variant) == (True, expected_variant("user-1"))
        poller = client.poller
        assert poller is not None and poller.is_alive()
    finally:
        close_official(client)
    assert not poller.is_alive()
    assert sync_server.flags_requests == 0
    names = {t.name for t in threading.enumerate()}
    assert poller.name not in names


def test_official_client_asks_flags(sync_server: LocalPostHog) -> None:
    sync_server.set_person_properties("user-1", {"plan": "pro"})
    client = official(sync_server.url, enable_local_evaluation=False)
    try:
        with pytest.deprecated_call():
            pro = client.get_feature_flag("pro", "user-1", send_feature_flag_events=False)
        with pytest.deprecated_call():
            variant = client.get_feature_flag(
                "experiment", "user-1", send_feature_flag_events=False
            )
        flags = client.evaluate_flags("user-2", flag_keys=["pro", "beta"])
        assert (flags.is_enabled("pro"), flags.is_enabled("beta")) == (False, True)
        assert flags.get_flag_payload("beta") == {"color": "blue"}
    finally:
        close_official(client)
    assert (pro, variant) == (True, expected_variant("user-1"))
    records = [r for r in sync_server.requests if r.group == "flags"]
    assert len(records) == 3
    assert all(r.status == 200 and r.token == TOKEN for r in records)


def test_official_client_remote_config(sync_server: LocalPostHog) -> None:
    client = official(sync_server.url, secret_key=SECRET, enable_local_evaluation=False)
    try:
        assert client.get_remote_config_payload("theme") == '{"mode": "dark"}'
    finally:
        close_official(client)
    assert sync_server.remote_config_requests == 1


async def test_definitions_swap_atomically(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    small = {"flags": DEFINITIONS["flags"][:1]}
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            server.set_flag_definitions(small)
            server.set_flag_definitions(DEFINITIONS)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(100):
            answer = await ask(client)
            assert len(answer["flags"]) in (1, len(DEFINITIONS["flags"]))
    finally:
        stop.set()
        swapper.join()
