"""Differential tests: our engine against the official posthog 7.91.1 local evaluation.

Random definitions and random people go through both; every flag must come out the same:
the same value and payload, or undecided in both (with the same reason when the official
SDK gives one; where it fails with an unexpected error and gives none, ours says
``evaluation_error``). Time is frozen in both, so relative dates agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioposthog._flags import FlagEngine, InconclusiveMatch, InconclusiveReason, compile_definitions
from aioposthog._flags._context import EvalContext
from aioposthog._flags._errors import Undecided
from aioposthog._flags._operators import compile_property

from ._strategies import (
    PROPERTY_KEYS,
    definitions,
    filter_value_pool,
    person,
    property_filter,
    property_value,
)
from ._support import frozen_official_clock

posthog_client = pytest.importorskip("posthog.client")
posthog_flags = pytest.importorskip("posthog.feature_flags")
posthog_types = pytest.importorskip("posthog.types")

FIXED_NOW = datetime(2024, 6, 15, 12, 0, 30, tzinfo=UTC)


class Official:
    """The official client, loaded with definitions by hand; no poller, no network."""

    def __init__(self) -> None:
        self.client = posthog_client.Client(
            "phc_test", secret_key="phx_test", enable_local_evaluation=False, send=False
        )

    def evaluate_all(self, defs: dict[str, Any], who: dict[str, Any]) -> dict[str, Any]:
        client = self.client
        client._update_flag_state(defs)
        groups = who["groups"]
        person_props, group_props = client._add_local_person_and_group_properties(
            groups, who["person_properties"], who["group_properties"]
        )
        local_props = client._person_properties_for_local_evaluation(
            who["distinct_id"], person_props
        )
        unresolved: dict[str, Any] = {}
        response, _fallback, _snapshot = client._get_all_flags_and_payloads_locally(
            who["distinct_id"],
            groups=groups,
            person_properties=local_props,
            group_properties=group_props,
            device_id=who["device_id"],
            unresolved=unresolved,
        )
        outcome: dict[str, Any] = {}
        for flag in defs["flags"]:
            key = flag["key"]
            if key in response["featureFlags"]:
                payload = posthog_types._parse_flag_payload(
                    response["featureFlagPayloads"].get(key)
                )
                outcome[key] = ("value", response["featureFlags"][key], payload)
            else:
                reason = unresolved.get(key)
                outcome[key] = ("inconclusive", None if reason is None else reason.value)
        return outcome


@pytest.fixture(scope="module")
def official() -> Iterator[Official]:
    logger = logging.getLogger("posthog")
    with frozen_official_clock(FIXED_NOW), pytest.MonkeyPatch.context() as patch:
        patch.setattr(logger, "disabled", True)
        oracle = Official()
        yield oracle
        oracle.client.shutdown()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def check(official: Official, defs: dict[str, Any], people: list[dict[str, Any]]) -> None:
    engine = FlagEngine(compile_definitions(defs, now=FIXED_NOW), clock=lambda: FIXED_NOW)
    for who in people:
        expected = official.evaluate_all(defs, who)
        kwargs = {
            "groups": who["groups"],
            "person_properties": who["person_properties"],
            "group_properties": who["group_properties"],
            "device_id": who["device_id"],
        }
        results, inconclusive = engine.evaluate_all(who["distinct_id"], **kwargs)
        for key, want in expected.items():
            try:
                single: Any = engine.evaluate(key, who["distinct_id"], **kwargs)
            except InconclusiveMatch as exc:
                single = exc.reason
            if want[0] == "value":
                got = results.get(key)
                assert got is not None, (key, want, inconclusive.get(key))
                assert _same(got.value, want[1]), (key, got, want)
                assert got.payload == want[2], (key, got, want)
                assert single is got
            else:
                reason = InconclusiveReason(want[1] or "evaluation_error")
                assert inconclusive.get(key) is reason, (key, want, results.get(key))
                assert single is reason
        assert set(results) | set(inconclusive) == set(expected)


_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@pytest.mark.timeout(240)  # ~20 s alone; leave room for a loaded CI machine
@settings(max_examples=1000, **_SETTINGS)
@given(defs=definitions(), people=st.lists(person(), min_size=1, max_size=3))
def test_random_definitions_match_official(
    official: Official, defs: dict[str, Any], people: list[dict[str, Any]]
) -> None:
    check(official, defs, people)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_random_definitions_match_official_long(
    official: Official, request: pytest.FixtureRequest
) -> None:
    """20,000 examples when selected with ``-m slow``; a short run in the default suite."""
    markexpr = request.config.getoption("markexpr") or ""
    selected = "slow" in markexpr and "not slow" not in markexpr

    @settings(max_examples=20_000 if selected else 200, **_SETTINGS)
    @given(defs=definitions(), people=st.lists(person(), min_size=1, max_size=4))
    def run(defs: dict[str, Any], people: list[dict[str, Any]]) -> None:
        check(official, defs, people)

    run()


def _official_match(prop: dict[str, Any], values: dict[str, Any], version: int) -> Any:
    try:
        return ("result", posthog_flags.match_property(prop, values, version))
    except posthog_flags.InconclusiveMatchError as exc:
        return ("undecided", exc.reason.value)


def _our_match(prop: dict[str, Any], values: dict[str, Any], version: int) -> Any:
    ctx = EvalContext(None, lambda: FIXED_NOW, FIXED_NOW)
    try:
        return ("result", compile_property(prop, version == 2).match(ctx, None, values))
    except Undecided as exc:
        return ("undecided", exc.reason.value)


@st.composite
def _filter_and_values(draw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    prop = draw(property_filter())
    values = draw(st.dictionaries(st.sampled_from(PROPERTY_KEYS), property_value(), max_size=3))
    if draw(st.sampled_from([True] * 4 + [False])):
        # Mostly test the filter's own key, with a value near the filter's.
        pool = st.sampled_from([prop["value"], *filter_value_pool(prop.get("operator"))])
        values[prop["key"]] = draw(st.one_of(pool, property_value()))
    return prop, values


@pytest.mark.timeout(240)
@settings(max_examples=2500, **_SETTINGS)
@given(case=_filter_and_values(), version=st.sampled_from([1, 2]))
def test_property_filters_match_official(
    official: Official, case: tuple[dict[str, Any], dict[str, Any]], version: int
) -> None:
    prop, values = case
    assert _our_match(prop, values, version) == _official_match(prop, values, version)
