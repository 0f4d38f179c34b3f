"""The engine's behaviour and API, on hand-written cases (``fixtures/engine_cases.json``)."""

from __future__ import annotations

import copy
import doctest
import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioposthog._flags import (
    CompiledDefinitions,
    FlagEngine,
    FlagResult,
    InconclusiveMatch,
    InconclusiveReason,
    MatchReason,
    compile_definitions,
)

from ._support import frozen_official_clock, load_fixture

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
_CASES = load_fixture("engine_cases")
_CALLS = [
    pytest.param(case, call, id=f"{case['name']} / {call['key']} #{index}")
    for case in _CASES
    for index, call in enumerate(case["calls"])
]


def _kwargs(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "groups": call.get("groups"),
        "person_properties": call.get("person_properties"),
        "group_properties": call.get("group_properties"),
        "device_id": call.get("device_id"),
    }


def _now(case: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(case["now"]) if "now" in case else NOW


def _outcome(engine: FlagEngine, call: dict[str, Any], now: datetime) -> dict[str, Any]:
    try:
        result = engine.evaluate(call["key"], call["distinct_id"], now=now, **_kwargs(call))
    except InconclusiveMatch as exc:
        return {"inconclusive": exc.reason.value, "key": exc.key}
    return {
        "value": result.value,
        "reason": str(result.reason),
        "condition_index": result.condition_index,
        "payload": result.payload,
        "meta": (result.locally_evaluated, result.flag_id, result.version),
    }


@pytest.mark.parametrize(("case", "call"), _CALLS)
def test_engine_case(case: dict[str, Any], call: dict[str, Any]) -> None:
    engine = FlagEngine(compile_definitions(case["definitions"]))
    expected = dict(call["expected"])
    if "inconclusive" in expected:
        expected["key"] = call["key"]
    else:
        expected["meta"] = (True, 10, 3)
    assert _outcome(engine, call, _now(case)) == expected


@pytest.mark.parametrize(("case", "call"), _CALLS)
def test_engine_case_agrees_with_official(case: dict[str, Any], call: dict[str, Any]) -> None:
    client_module = pytest.importorskip("posthog.client")
    client = client_module.Client(
        "phc_test", secret_key="phx_test", enable_local_evaluation=False, send=False
    )
    try:
        definitions = {"group_type_mapping": {}, "cohorts": {}, **case["definitions"]}
        client._update_flag_state(definitions)
        try:
            with frozen_official_clock(_now(case)):
                result = client.get_feature_flag_result(
                    call["key"],
                    call["distinct_id"],
                    only_evaluate_locally=True,
                    send_feature_flag_events=False,
                    **_kwargs(call),
                )
        except AttributeError:
            # Its payload lookup assumes ``filters`` is an object, even for inactive flags.
            assert call["key"] == "bad-filters-off"
            return
        expected = call["expected"]
        if "inconclusive" in expected:
            assert result is None
        else:
            assert result is not None
            assert result.get_value() == expected["value"]
            assert result.payload == expected["payload"]
    finally:
        client.shutdown()


# -- API ----------------------------------------------------------------------------------

_DEFS: dict[str, Any] = {
    "flags": [
        {
            "id": 1,
            "key": "on",
            "active": True,
            "version": 2,
            "filters": {"groups": [{"rollout_percentage": 100}], "payloads": {"true": '"hi"'}},
        },
        {
            "id": 2,
            "key": "needs-plan",
            "active": True,
            "filters": {"groups": [{"properties": [{"key": "plan", "value": "pro"}]}]},
        },
        {
            "id": 3,
            "key": "recent",
            "active": True,
            "filters": {
                "groups": [
                    {"properties": [{"key": "seen", "operator": "is_date_after", "value": "-1d"}]}
                ]
            },
        },
    ]
}


def test_evaluate_all_reports_results_and_undecided_flags() -> None:
    engine = FlagEngine(compile_definitions(_DEFS), clock=lambda: NOW)
    results, inconclusive = engine.evaluate_all("u1", person_properties={"seen": "2024-06-15"})
    assert list(results) == ["on", "recent"]
    assert inconclusive == {"needs-plan": InconclusiveReason.MISSING_CONTEXT}
    assert results["on"] == FlagResult("on", True, "hi", MatchReason.CONDITION_MATCH, 0, 1, 2)
    assert results["on"].enabled
    assert results["on"].variant is None


def test_evaluate_all_with_keys() -> None:
    engine = FlagEngine(compile_definitions(_DEFS))
    results, inconclusive = engine.evaluate_all("u1", keys=["on", "unknown"])
    assert list(results) == ["on"]
    assert inconclusive == {"unknown": InconclusiveReason.FLAG_NOT_FOUND}
    assert engine.evaluate_all("u1", keys=[]) == ({}, {})


def test_now_is_injectable_per_call_and_per_engine() -> None:
    engine = FlagEngine(compile_definitions(_DEFS), clock=lambda: NOW)
    props = {"seen": "2024-06-15T00:00:00Z"}
    assert engine.evaluate("recent", "u", person_properties=props).value is True
    later = NOW + timedelta(days=3)
    assert engine.evaluate("recent", "u", person_properties=props, now=later).value is False
    naive_clock = FlagEngine(compile_definitions(_DEFS), clock=lambda: later.replace(tzinfo=None))
    assert naive_clock.evaluate("recent", "u", person_properties=props).value is False


def test_inconclusive_match_carries_key_and_reason() -> None:
    engine = FlagEngine(compile_definitions(_DEFS))
    with pytest.raises(InconclusiveMatch) as raised:
        engine.evaluate("needs-plan", "u1")
    assert raised.value.key == "needs-plan"
    assert raised.value.reason is InconclusiveReason.MISSING_CONTEXT
    assert "needs-plan" in str(raised.value)


def test_results_are_shared_and_immutable() -> None:
    engine = FlagEngine(compile_definitions(_DEFS))
    first = engine.evaluate("on", "a")
    assert engine.evaluate("on", "b") is first
    with pytest.raises(AttributeError):
        first.value = False  # type: ignore[misc]  # the point: frozen


def test_compiled_definitions_is_a_read_only_mapping() -> None:
    payload = copy.deepcopy(_DEFS)
    payload["flags"].extend([{"key": 5}, "junk", {"key": "x", "active": True, "filters": []}])
    payload["property_matching_version"] = 2
    compiled = compile_definitions(payload)
    assert isinstance(compiled, CompiledDefinitions)
    assert list(compiled) == ["on", "needs-plan", "recent", "x"]
    assert "on" in compiled
    assert len(compiled) == 4
    assert compiled.property_matching_version == 2
    assert len(compiled.problems) == 2
    assert "4 flags" in repr(compiled)
    with pytest.raises(TypeError):
        compiled._flags["y"] = compiled["on"]  # type: ignore[index]  # the point: read-only


def test_compiling_does_not_modify_the_payload() -> None:
    payload = copy.deepcopy(load_fixture("engine_cases")[11]["definitions"])
    before = json.dumps(payload, sort_keys=True)
    engine = FlagEngine(compile_definitions(payload))
    engine.evaluate_all("u", person_properties={"plan": "pro", "age": 70})
    assert json.dumps(payload, sort_keys=True) == before


def test_duplicate_keys_keep_the_last_definition() -> None:
    flags = [
        {"key": "dup", "active": True, "filters": {"groups": [{"rollout_percentage": 0}]}},
        {"key": "dup", "active": True, "filters": {"groups": [{"rollout_percentage": 100}]}},
    ]
    assert FlagEngine(compile_definitions({"flags": flags})).evaluate("dup", "u").value is True


def test_empty_or_odd_payloads() -> None:
    payloads: list[dict[str, Any]] = [{}, {"flags": None}, {"flags": "x"}, {"cohorts": []}]
    for payload in payloads:
        assert FlagEngine(compile_definitions(payload)).evaluate_all("u") == ({}, {})


def test_dependency_reason_when_the_chain_misses_the_flag() -> None:
    flags = [
        {"key": "a", "active": True, "filters": {"groups": [{"rollout_percentage": 100}]}},
        {"key": "b", "active": True, "filters": {"groups": [{"rollout_percentage": 100}]}},
        {
            "key": "c",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {
                                "key": "b",
                                "type": "flag",
                                "operator": "flag_evaluates_to",
                                "value": True,
                                "dependency_chain": ["a"],
                            }
                        ]
                    }
                ]
            },
        },
    ]
    engine = FlagEngine(compile_definitions({"flags": flags}))
    with pytest.raises(InconclusiveMatch) as raised:
        engine.evaluate("c", "u")
    assert raised.value.reason is InconclusiveReason.UNSUPPORTED_DEFINITION


def test_dependency_cycles_are_evaluation_errors() -> None:
    def flag(key: str, other: str) -> dict[str, Any]:
        return {
            "key": key,
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {
                                "key": other,
                                "type": "flag",
                                "operator": "flag_evaluates_to",
                                "value": True,
                                "dependency_chain": [other],
                            }
                        ]
                    }
                ]
            },
        }

    engine = FlagEngine(compile_definitions({"flags": [flag("a", "b"), flag("b", "a")]}))
    _results, inconclusive = engine.evaluate_all("u")
    assert inconclusive == {
        "a": InconclusiveReason.EVALUATION_ERROR,
        "b": InconclusiveReason.EVALUATION_ERROR,
    }


def test_cohort_cycles_are_evaluation_errors() -> None:
    cohorts = {
        "1": {"type": "AND", "values": [{"type": "cohort", "value": 2}]},
        "2": {"type": "AND", "values": [{"type": "cohort", "value": 1}]},
    }
    flags = [
        {
            "key": "c",
            "active": True,
            "filters": {"groups": [{"properties": [{"type": "cohort", "value": 1}]}]},
        }
    ]
    engine = FlagEngine(compile_definitions({"flags": flags, "cohorts": cohorts}))
    assert engine.evaluate_all("u")[1] == {"c": InconclusiveReason.EVALUATION_ERROR}


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(
    [
        "key",
        "active",
        "filters",
        "groups",
        "properties",
        "rollout_percentage",
        "value",
        "operator",
        "type",
        "variant",
        "multivariate",
        "variants",
        "payloads",
        "holdout",
        "aggregation_group_type_index",
        "dependency_chain",
        "values",
        "negation",
        "id",
    ]
)
_SHAPED = st.recursive(
    _JSON,
    lambda inner: st.dictionaries(_KEYS, inner, max_size=5) | st.lists(inner, max_size=3),
    max_leaves=25,
)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    flags=st.lists(
        st.fixed_dictionaries(
            {"key": st.sampled_from(["a", "b"]), "active": st.just(True), "filters": _SHAPED}
        ),
        max_size=3,
    ),
    cohorts=st.dictionaries(st.sampled_from(["1", "2"]), _SHAPED, max_size=2),
    props=st.dictionaries(st.sampled_from(["a", "key", "value"]), _JSON, max_size=3),
)
def test_arbitrary_json_never_crashes(
    flags: list[Any], cohorts: dict[str, Any], props: dict[str, Any]
) -> None:
    engine = FlagEngine(compile_definitions({"flags": flags, "cohorts": cohorts}))
    results, inconclusive = engine.evaluate_all("u", person_properties=props)
    assert set(results) | set(inconclusive) == {flag["key"] for flag in flags}


@pytest.mark.parametrize("module", ["", "._compile", "._dates", "._engine", "._result", "._semver"])
def test_docstring_examples(module: str) -> None:
    results = doctest.testmod(importlib.import_module("aioposthog._flags" + module))
    assert results.attempted > 0
    assert results.failed == 0
