"""The pytest plugin users get with aioposthog: the `local_posthog` fixture and its marker."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio

import httpx
import pytest

from aioposthog import AsyncPostHog


def test_sync_use(local_posthog, local_posthog_url):
    assert local_posthog_url == local_posthog.url
    assert local_posthog.url.startswith("http://127.0.0.1:")
    response = httpx.post(
        local_posthog.url + "/batch/",
        json={"api_key": "phc_t", "batch": [{"event": "e", "distinct_id": "u1"}]},
    )
    assert response.status_code == 200
    assert [e["event"] for e in local_posthog.events] == ["e"]


def test_a_fresh_server_per_test(local_posthog):
    assert local_posthog.events == []


def test_with_the_client(local_posthog):
    async def main():
        async with AsyncPostHog("phc_t", host=local_posthog.url) as posthog:
            await posthog.capture("signed up", distinct_id="u1", properties={"plan": "pro"})
        return await local_posthog.wait_for_events(1)

    assert asyncio.run(main()) == 1
    assert local_posthog.events[0]["properties"]["plan"] == "pro"


@pytest.mark.local_posthog(api_key="phc_only")
def test_marker_options(local_posthog):
    wrong = httpx.post(
        local_posthog.url + "/batch/",
        json={"api_key": "phc_other", "batch": [{"event": "e", "distinct_id": "u1"}]},
    )
    assert wrong.status_code == 401


@pytest.mark.local_posthog(colour="blue")
def test_unknown_marker_option(local_posthog):
    pass
"""


def test_the_plugin_is_registered_under_pytest11() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("aioposthog") == "aioposthog.testing.pytest_plugin"


def test_fixtures_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*UsageError: @pytest.mark.local_posthog: unknown option(s)*colour*"]
    )


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app="def test_x(local_posthog):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:aioposthog", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'local_posthog' not found*"])
