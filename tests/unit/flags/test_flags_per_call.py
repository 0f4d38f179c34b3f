"""What the engine builds per call, and that skipping the rest never changes an answer.

The compiler marks each flag with whether any filter it can reach (its cohorts' and its
dependencies' included) reads the ``distinct_id`` person property, and whether it needs its
own `EvalContext` (dates, dependencies, device bucketing); `FlagEngine.evaluate` skips the
person-properties copy and the context for the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aioposthog._flags import FlagEngine, compile_definitions
from aioposthog._flags._context import NO_CONTEXT
from aioposthog.testing import sample_flag_definitions, sample_person

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def _person(key: str, value: Any, operator: str = "exact") -> dict[str, Any]:
    return {"key": key, "value": value, "operator": operator, "type": "person"}


def _flag(key: str, *properties: dict[str, Any], **filters: Any) -> dict[str, Any]:
    return {
        "key": key,
        "active": True,
        "filters": {"groups": [{"properties": list(properties)}], **filters},
    }


def _depends_on(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "type": "flag",
        "operator": "flag_evaluates_to",
        "value": True,
        "dependency_chain": [key],
    }


_DEFINITIONS: dict[str, Any] = {
    "flags": [
        _flag("plain", _person("plan", "pro")),
        _flag("by-id", _person("distinct_id", ["u1", "u2"])),
        _flag("by-id-in-cohort", {"type": "cohort", "value": 7}),
        _flag("by-id-dependency", _depends_on("by-id")),
        _flag("by-id-dependency-of-dependency", _depends_on("by-id-dependency")),
        _flag("dated", _person("seen", "-1d", "is_date_after")),
        _flag("dated-dependency", _depends_on("dated")),
        _flag("device", _person("plan", "pro"), bucketing_identifier="device_id"),
        _flag("group-key", _person("$group_key", "acme"), aggregation_group_type_index=0),
    ],
    "cohorts": {
        "7": {
            "type": "OR",
            "values": [{"type": "AND", "values": [_person("distinct_id", "u1", "icontains")]}],
        }
    },
    "group_type_mapping": {"0": "company"},
}


@pytest.fixture
def engine() -> FlagEngine:
    return FlagEngine(compile_definitions(_DEFINITIONS), clock=lambda: NOW)


@pytest.mark.parametrize(
    ("key", "reads_distinct_id", "needs_context"),
    [
        ("plain", False, False),
        ("by-id", True, False),
        ("by-id-in-cohort", True, False),
        ("by-id-dependency", True, True),
        ("by-id-dependency-of-dependency", True, True),
        ("dated", False, True),
        ("dated-dependency", False, True),
        ("device", False, True),
        ("group-key", False, False),
    ],
)
def test_the_compiler_marks_what_each_flag_reads(
    key: str, reads_distinct_id: bool, needs_context: bool
) -> None:
    flag = compile_definitions(_DEFINITIONS)[key]
    assert (flag.reads_distinct_id, flag.needs_context) == (reads_distinct_id, needs_context)


@pytest.mark.parametrize(
    "key", ["by-id", "by-id-in-cohort", "by-id-dependency", "by-id-dependency-of-dependency"]
)
@pytest.mark.parametrize("person", [None, {}, {"plan": "pro"}])
def test_filters_on_distinct_id_see_the_distinct_id(
    engine: FlagEngine, key: str, person: dict[str, Any] | None
) -> None:
    before = None if person is None else dict(person)
    assert engine.evaluate(key, "u1", person_properties=person).value is True
    assert engine.evaluate(key, "u3", person_properties=person).value is False
    assert person == before  # the caller's mapping is never modified
    results, inconclusive = engine.evaluate_all("u1", person_properties=person, keys=[key])
    assert (results[key].value, inconclusive) == (True, {})


def test_a_distinct_id_person_property_wins_over_the_distinct_id(engine: FlagEngine) -> None:
    assert engine.evaluate("by-id", "u3", person_properties={"distinct_id": "u2"}).value is True
    assert engine.evaluate("by-id", "u1", person_properties={"distinct_id": "x"}).value is False


def test_flags_without_per_call_needs(engine: FlagEngine) -> None:
    assert engine.evaluate("plain", "u1", person_properties={"plan": "pro"}).value is True
    results, inconclusive = engine.evaluate_all(
        "u1", person_properties={"plan": "pro"}, groups={"company": "acme"}
    )
    assert results["plain"].value is True
    assert results["group-key"].value is True
    assert "dated" in inconclusive  # no "seen" property
    group = engine.evaluate("group-key", "u1", groups={"company": "acme"})
    assert group.value is True
    assert engine.evaluate("group-key", "u1", groups={"company": "other"}).value is False


def test_flags_with_a_context(engine: FlagEngine) -> None:
    seen = {"seen": "2024-06-15T00:00:00Z"}
    assert engine.evaluate("dated", "u1", person_properties=seen).value is True
    assert engine.evaluate("dated-dependency", "u1", person_properties=seen).value is True
    old = {"seen": "2024-06-01T00:00:00Z"}
    assert engine.evaluate("dated-dependency", "u1", person_properties=old).value is False
    pro = {"plan": "pro"}
    assert engine.evaluate("device", "u1", person_properties=pro, device_id="d1").value is True


def test_the_shared_context_fails_loudly_if_misused() -> None:
    with pytest.raises(RuntimeError):
        NO_CONTEXT.now()
    with pytest.raises(TypeError):
        NO_CONTEXT.cache["x"] = True
    with pytest.raises(AttributeError):
        NO_CONTEXT.visiting.add("x")  # a frozenset in disguise


def test_one_flag_at_a_time_agrees_with_all_flags_on_the_samples() -> None:
    definitions = sample_flag_definitions()
    engine = FlagEngine(compile_definitions(definitions), clock=lambda: NOW)
    keys = [flag["key"] for flag in definitions["flags"]]
    for index in range(300):
        call: dict[str, Any] = {
            "person_properties": sample_person(index),
            "groups": {"company": f"company-{index % 50}"},
            "group_properties": {"company": {"seats": index % 120}},
        }
        results, inconclusive = engine.evaluate_all(f"user-{index}", **call)
        assert not inconclusive
        for key in keys:
            assert engine.evaluate(key, f"user-{index}", **call) is results[key]
