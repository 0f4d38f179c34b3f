"""The official SDK's public test fixtures, ported as data, replayed through our engine.

Each ``fixtures/*.json`` names its source in the official posthog-python 7.91.1 test-suite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aioposthog._flags import (
    FlagEngine,
    InconclusiveMatch,
    InconclusiveReason,
    compile_definitions,
)
from aioposthog._flags._context import EvalContext
from aioposthog._flags._dates import relative_date
from aioposthog._flags._errors import Undecided
from aioposthog._flags._operators import compile_property

from ._support import decode, load_fixture

FIXED_NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def _match(prop: dict[str, Any], values: dict[str, Any], version: Any, now: datetime) -> Any:
    node = compile_property(prop, version == 2)
    ctx = EvalContext(None, lambda: now, now)
    try:
        return {"result": node.match(ctx, None, values)}
    except Undecided as exc:
        return {"undecided": exc.reason.value}


# -- consistency tables: 1,000 distinct ids each ----------------------------------------


@pytest.mark.parametrize("table", ["simple", "multivariate"])
def test_consistency_table(table: str) -> None:
    fixture = load_fixture("consistency")[table]
    engine = FlagEngine(compile_definitions({"flags": fixture["flags"]}))
    key = fixture["flags"][0]["key"]
    got = [engine.evaluate(key, f"distinct_id_{i}").value for i in range(1000)]
    expected = [value if value else False for value in fixture["results"]]
    if table == "simple":
        expected = [bool(value) for value in expected]
    assert got == expected


def test_consistency_table_through_evaluate_all() -> None:
    fixture = load_fixture("consistency")
    flags = fixture["simple"]["flags"] + fixture["multivariate"]["flags"]
    engine = FlagEngine(compile_definitions({"flags": flags}))
    for i in range(1000):
        results, inconclusive = engine.evaluate_all(f"distinct_id_{i}")
        assert not inconclusive
        assert results["simple-flag"].value is bool(fixture["simple"]["results"][i])
        assert results["multivariate-flag"].value == (
            fixture["multivariate"]["results"][i] or False
        )


# -- operator tables ----------------------------------------------------------------------

_MATCH_CASES = load_fixture("match_property_cases")


@pytest.mark.parametrize("case", _MATCH_CASES, ids=lambda case: str(case["property"])[:60])
def test_match_property_case(case: dict[str, Any]) -> None:
    now = datetime.fromisoformat(case["now"])
    got = _match(decode(case["property"]), decode(case["values"]), case["version"], now)
    assert got == case["expected"]


@pytest.mark.parametrize("row", load_fixture("property_matching_version_rows"), ids=repr)
@pytest.mark.parametrize("version", [None, 1, 2, 0, 3, "2"])
@pytest.mark.parametrize("operator", ["exact", "is_not"])
def test_property_matching_version_rows(row: list[Any], version: Any, operator: str) -> None:
    filter_value, property_value, legacy, explicit = row
    expected = explicit if version == 2 else legacy
    prop = {"key": "value", "value": filter_value, "operator": operator}
    got = _match(prop, {"value": property_value}, version, FIXED_NOW)
    assert got == {"result": expected if operator == "exact" else not expected}


@pytest.mark.parametrize("operator", ["regex", "not_regex"])
@pytest.mark.parametrize("row", load_fixture("regex_rows")["deferred"], ids=repr)
def test_regex_rows_left_to_the_server(row: list[Any], operator: str) -> None:
    pattern, value = row
    prop = {"key": "value", "type": "person", "operator": operator, "value": pattern}
    got = _match(prop, {"value": value}, 1, FIXED_NOW)
    assert got == {"undecided": "unsupported_definition"}


@pytest.mark.parametrize("operator", ["regex", "not_regex"])
@pytest.mark.parametrize("row", load_fixture("regex_rows")["local"], ids=repr)
def test_regex_rows_decided_locally(row: list[Any], operator: str) -> None:
    pattern, value, expected = row
    prop = {"key": "value", "type": "person", "operator": operator, "value": pattern}
    got = _match(prop, {"value": value}, 1, FIXED_NOW)
    assert got == {"result": expected if operator == "regex" else not expected}


@pytest.mark.parametrize("case", load_fixture("relative_dates"), ids=repr)
def test_relative_dates(case: dict[str, Any]) -> None:
    got = relative_date(case["value"], datetime.fromisoformat(case["now"]))
    assert (None if got is None else got.isoformat()) == case["expected"]


# -- whole local evaluations --------------------------------------------------------------

_LOCAL = load_fixture("local_evaluation_cases")


@pytest.mark.parametrize("case", _LOCAL["cases"], ids=lambda case: str(case["key"]))
def test_local_evaluation_case(case: dict[str, Any]) -> None:
    definitions = decode(_LOCAL["definitions"][case["definitions"]])
    engine = FlagEngine(compile_definitions(definitions))
    expected = case["expected"]
    try:
        result = engine.evaluate(
            case["key"],
            decode(case["distinct_id"]),
            groups=decode(case["groups"]),
            person_properties=decode(case["person_properties"]),
            group_properties=decode(case["group_properties"]),
            device_id=case["device_id"],
            now=datetime.fromisoformat(case["now"]),
        )
    except InconclusiveMatch as exc:
        got: dict[str, Any] = {"inconclusive": exc.reason}
    else:
        got = {"value": result.value, "payload": result.payload}
    if "inconclusive" in expected:
        reason = expected["inconclusive"]
        if reason is None:  # the official SDK failed with an error and gave no reason
            known = any(flag.get("key") == case["key"] for flag in definitions["flags"])
            reason = "evaluation_error" if known else "flag_not_found"
        assert got == {"inconclusive": InconclusiveReason(reason)}
    else:
        assert got == {"value": expected["value"], "payload": decode(expected["payload"])}
