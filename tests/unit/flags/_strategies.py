"""Hypothesis strategies for random flag definitions and random people.

Definitions mix every operator, rollouts, variants and overrides, holdouts, enrollment,
device bucketing, group flags and mixed targeting, cohorts (nested, negated, static, or
malformed), and flag dependencies with correct, partial, empty or broken chains. Values are
drawn from small pools that straddle the operators' edge cases, so that matches, misses and
undecided filters are all frequent. Dependencies only point at earlier flags, cohorts only
at earlier cohorts and, from cohorts, at the first flag (which uses no cohort): genuine
cycles are not generated (the official SDK recurses until ``RecursionError`` on them).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import strategies as st

Draw = Any  # hypothesis' DrawFn

PROPERTY_KEYS = ["email", "plan", "age", "signup", "version", "name", "distinct_id", "$group_key"]

OPERATORS = [
    "exact",
    "is_not",
    "is_set",
    "is_not_set",
    "icontains",
    "not_icontains",
    "regex",
    "not_regex",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_date_before",
    "is_date_after",
    "semver_eq",
    "semver_neq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "semver_tilde",
    "semver_caret",
    "semver_wildcard",
    None,
]

TEXTS = [
    "pro",
    "PRO",
    "Pro plan",
    "free",
    "true",
    "False",
    "TRUE",
    "a@example.com",
    "Bob@Example.COM",
    "",
    "123",
    "4.5",
    "1e3",
    " 7",
    "-2",
    "2024-01-01",
    "2024-06-14T23:59:59Z",
    "2024-06-10 12:00:00 +01:00",
    "2023-02-28",
    "2020",
    "1.2.3",
    "v1.3.0",
    "2.0.0-beta",
    "0.0.3",
    "01.2.3",
    "é",
    "É",
    "null",
    "[1,2]",
    "foo\n",
    "ß",
    "user-1",
    "acme",
    "\u0130",
]

NUMBERS = [0, 1, 5, 18, 100, -3, 0.5, 1e-05, 1e22, 3.0, 17.999, 2**60]

PROPERTY_VALUES: list[Any] = [
    *TEXTS,
    *NUMBERS,
    True,
    False,
    None,
    ["pro"],
    [True],
    [],
    ["true", ["TRUE"]],
    {"a": 1},
    {"b": [1, "x"], "a": None},
    datetime(2024, 6, 1, 8, 30, tzinfo=UTC),
    datetime(2024, 6, 15, 11, 0),
    date(2024, 6, 14),
    float("nan"),
]

FILTER_VALUES: dict[str, list[Any]] = {
    "exact": [
        *TEXTS[:12],
        5,
        1.0,
        True,
        False,
        None,
        [],
        ["pro", "free"],
        ["true", "false"],
        [True],
        [1, "PRO"],
        [None, "x"],
        [[True], "pro"],
    ],
    "text": ["pro", "PR", "example.com", "", "e", 1, "null", "tru", None, [1], "É"],
    "regex": [
        "^pro",
        "pro$",
        r"^\d+$",
        r".*@example\.com$",
        "[",
        "",
        "(a+)+",
        r"\bfoo",
        "^[a-z]+$",
        "a|b",
        r"\w+",
        "^.$",
        r"^\s*$",
        "(?i)pro",
        "^(?:tr|fa)",
    ],
    "numeric": [5, "5", 18, 0, -1, 0.5, "1e3", "abc", True, None, "  3", 100.0, "1_000"],
    "date": [
        "2024-01-01",
        "2024-06-15T11:00:00Z",
        "2024-06-10 12:00:00 +01:00",
        "-7d",
        "1m",
        "2y",
        "-3h",
        "1w",
        "10000d",
        "2020",
        "garbage",
        "2024-02-29",
        "12x",
        "0d",
        1234,
    ],
    "semver": ["1.2.3", "v2.0", "1.*", "1.2.*", "01.2", "0.0.3", "x.y", "1.2.3-beta", "0.2", "*"],
}


def _chance(draw: Draw, n: int) -> bool:
    """True about once in ``n + 1`` draws (``integers`` would favour 0 far more often)."""
    return bool(draw(st.sampled_from([False] * n + [True])))


def filter_value_pool(operator: Any) -> list[Any]:
    if operator in (None, "exact", "is_not", "is_set", "is_not_set", "bogus_operator"):
        return FILTER_VALUES["exact"]
    if "regex" in operator:
        return FILTER_VALUES["regex"]
    if operator in ("gt", "gte", "lt", "lte"):
        return FILTER_VALUES["numeric"]
    if "date" in operator:
        return FILTER_VALUES["date"]
    if operator.startswith("semver"):
        return FILTER_VALUES["semver"]
    return FILTER_VALUES["text"]


@st.composite
def property_filter(draw: Draw) -> dict[str, Any]:
    """A person/group property filter."""
    operator = draw(st.sampled_from(OPERATORS))
    if _chance(draw, 40):
        operator = "bogus_operator"
    prop: dict[str, Any] = {
        "key": draw(st.sampled_from(PROPERTY_KEYS)),
        "type": draw(st.sampled_from(["person", "group"])),
        "value": draw(st.sampled_from(filter_value_pool(operator))),
    }
    if operator is not None:
        prop["operator"] = operator
    if _chance(draw, 9):
        prop["negation"] = True
    return prop


@st.composite
def cohort_group(draw: Draw, cohort_ids: list[str], depth: int = 0) -> Any:
    """A cohort's property group; may refer to ``cohort_ids`` (earlier cohorts)."""
    if _chance(draw, 30):
        return draw(st.sampled_from([{}, [], {"type": "XOR", "values": []}, {"type": "AND"}]))
    size = draw(st.integers(0, 3))
    values: list[Any] = []
    for _ in range(size):
        choice = draw(st.sampled_from(range(10)))
        if choice == 0 and depth < 2:
            values.append(draw(cohort_group(cohort_ids, depth + 1)))
        elif choice == 1 and cohort_ids:
            entry = {
                "type": "cohort",
                "value": draw(st.sampled_from([*cohort_ids, "404"])),
                "operator": draw(st.sampled_from(["in", "not_in", "exact", None])),
            }
            if draw(st.booleans()):
                entry["negation"] = draw(st.booleans())
            values.append(entry)
        elif choice == 2 and _chance(draw, 5):
            values.append(draw(st.sampled_from([5, "x", None])))
        elif choice == 3:
            # A dependency on the first flag, which itself never uses cohorts (no cycles).
            entry = {
                "type": "flag",
                "key": "flag-0",
                "operator": "flag_evaluates_to",
                "value": draw(st.sampled_from([True, False, "control"])),
                "dependency_chain": ["flag-0"],
            }
            if draw(st.booleans()):
                entry["negation"] = True
            values.append(entry)
        else:
            values.append(draw(property_filter()))
    return {"type": draw(st.sampled_from(["AND", "OR"])), "values": values}


@st.composite
def cohorts(draw: Draw) -> dict[str, Any]:
    """Up to three cohorts, each may refer to the earlier ones."""
    result: dict[str, Any] = {}
    for index in range(draw(st.integers(0, 3))):
        result[str(index + 1)] = draw(cohort_group(list(result)))
    return result


def _chain(flag_key: str, deps_of: dict[str, list[str]]) -> list[str]:
    chain: list[str] = []
    for dep in deps_of.get(flag_key, []):
        for item in _chain(dep, deps_of):
            if item not in chain:
                chain.append(item)
    chain.append(flag_key)
    return chain


@st.composite
def dependency_filter(
    draw: Draw, earlier: list[str], deps_of: dict[str, list[str]], variants: dict[str, list[str]]
) -> dict[str, Any]:
    """A ``flag_evaluates_to`` filter on an earlier flag, with a mostly correct chain."""
    target = draw(st.sampled_from([*earlier, *earlier, *earlier, "ghost"]))
    expected = draw(
        st.sampled_from([True, False, "control", "test", "other", None, *variants.get(target, [])])
    )
    prop: dict[str, Any] = {
        "type": "flag",
        "key": target,
        "value": expected,
        "operator": draw(st.sampled_from(["flag_evaluates_to"] * 15 + ["exact"])),
    }
    shape = draw(st.sampled_from(range(21)))
    if shape == 5 and earlier:
        # A chain that does not end with the flag it names.
        prop["dependency_chain"] = _chain(draw(st.sampled_from(earlier)), deps_of)
    elif shape == 0:
        pass  # no dependency_chain at all
    elif shape == 1:
        prop["dependency_chain"] = []
    elif shape == 2:
        prop["dependency_chain"] = [target]
    elif shape == 3:
        prop["dependency_chain"] = ["ghost", *_chain(target, deps_of)]
    elif shape == 4:
        prop["dependency_chain"] = "nope"
    else:
        prop["dependency_chain"] = _chain(target, deps_of)
    return prop


ROLLOUTS = [None, 0, 10, 33.3, 50, 99.9, 100, 100, 100, None, 150, -5]


@st.composite
def condition(
    draw: Draw,
    cohort_ids: list[str],
    earlier: list[str],
    deps_of: dict[str, list[str]],
    variants: dict[str, list[str]],
    own_variants: list[str],
    used: list[str],
) -> Any:
    """A release condition; ``used`` collects the flags it depends on."""
    if _chance(draw, 100):
        return draw(st.sampled_from(["oops", None, 3]))
    filters: list[Any] = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 2, 3]))):
        kind = draw(st.sampled_from(range(10)))
        if kind == 0 and (cohort_ids or draw(st.booleans())):
            filters.append(
                {
                    "type": "cohort",
                    "key": "id",
                    "value": draw(st.sampled_from([*cohort_ids, *cohort_ids, "404", 404])),
                    "operator": draw(st.sampled_from(["in", "not_in", None, "exact", "bogus"])),
                }
            )
        elif kind in (1, 2, 3) and (earlier or _chance(draw, 3)):
            dep = draw(dependency_filter(earlier, deps_of, variants))
            if isinstance(dep.get("dependency_chain"), list) and dep["key"] in earlier:
                used.append(dep["key"])
            filters.append(dep)
        elif kind == 4 and _chance(draw, 20):
            filters.append(draw(st.sampled_from(["junk", 7, None])))
        else:
            filters.append(draw(property_filter()))
    cond: dict[str, Any] = {"properties": filters}
    odd = draw(st.sampled_from(range(81)))
    if odd == 0:
        cond["properties"] = draw(st.sampled_from([{"a": 1}, "xy", 5, None]))
    cond["rollout_percentage"] = draw(st.sampled_from(ROLLOUTS))
    if odd == 1:
        cond["rollout_percentage"] = "50"
    if own_variants and _chance(draw, 3):
        cond["variant"] = draw(st.sampled_from([*own_variants, "nope", None]))
    if _chance(draw, 6):
        cond["aggregation_group_type_index"] = draw(st.sampled_from([0, 1, 2, None]))
    return cond


@st.composite
def definitions(draw: Draw) -> dict[str, Any]:
    """A whole ``/flags/definitions`` payload."""
    cohort_map = draw(cohorts())
    all_cohort_ids = list(cohort_map)
    flags: list[dict[str, Any]] = []
    deps_of: dict[str, list[str]] = {}
    variants: dict[str, list[str]] = {}
    for index in range(draw(st.integers(1, 6))):
        key = f"flag-{index}"
        earlier = [flag["key"] for flag in flags]
        cohort_ids = all_cohort_ids if index else []
        own_variants: list[str] = []
        filters: dict[str, Any] = {}
        if _chance(draw, 2):
            names = draw(st.sampled_from([["control", "test"], ["a", "b", "c"], ["solo"]]))
            splits = draw(
                st.sampled_from(
                    [[100 / len(names)] * len(names), [50, 50, 0][: len(names)], [10, 20, 30]]
                )
            )
            own_variants = names
            variants[key] = names
            filters["multivariate"] = {
                "variants": [
                    {"key": name, "rollout_percentage": splits[i % len(splits)]}
                    for i, name in enumerate(names)
                ]
            }
            if _chance(draw, 60):
                filters["multivariate"]["variants"].append({"name": "no key"})
        used: list[str] = []
        filters["groups"] = draw(
            st.lists(
                condition(cohort_ids, earlier, deps_of, variants, own_variants, used),
                max_size=3,
            )
        )
        deps_of[key] = used
        if _chance(draw, 4):
            filters["aggregation_group_type_index"] = draw(st.sampled_from([0, 0, 1, 1, 2]))
        if _chance(draw, 12):
            filters["bucketing_identifier"] = "device_id"
        if _chance(draw, 15):
            filters["feature_enrollment"] = True
        if _chance(draw, 10):
            filters["holdout"] = {
                "id": draw(st.integers(1, 999)),
                "exclusion_percentage": draw(st.sampled_from([0, 10, 50, 100, 150, -5, "20"])),
            }
        if draw(st.booleans()):
            filters["early_exit"] = True
        if draw(st.booleans()):
            filters["payloads"] = {
                name: draw(
                    st.sampled_from(
                        [json.dumps({"n": 1}), '"text"', "[1, 2]", "{not json", "NaN", "3"]
                    )
                )
                for name in ["true", "false", *own_variants, "holdout-5"]
                if draw(st.booleans())
            }
        flag: dict[str, Any] = {
            "id": index + 1,
            "key": key,
            "active": draw(st.sampled_from([True] * 9 + [False])),
            "version": draw(st.integers(1, 5)),
            "filters": filters,
        }
        if _chance(draw, 40):
            flag["ensure_experience_continuity"] = True
        if _chance(draw, 150):
            flag["filters"] = ["not", "an", "object"]
        flags.append(flag)
    payload: dict[str, Any] = {
        "flags": flags,
        "group_type_mapping": draw(
            st.sampled_from([{"0": "company", "1": "project"}] * 4 + [{"0": "company"}, {}])
        ),
        "cohorts": cohort_map,
    }
    version = draw(st.sampled_from([None, 1, 2]))
    if version is not None:
        payload["property_matching_version"] = version
    return payload


def property_value() -> st.SearchStrategy[Any]:
    """A property value: from the general pool, or from a filter-value pool (near misses)."""
    return st.one_of(
        st.sampled_from(PROPERTY_VALUES),
        st.sampled_from(sorted(FILTER_VALUES)).flatmap(
            lambda family: st.sampled_from(FILTER_VALUES[family])
        ),
    )


@st.composite
def properties(draw: Draw) -> dict[str, Any]:
    """Person or group properties drawn from the pools."""
    keys = draw(st.lists(st.sampled_from(PROPERTY_KEYS), min_size=2, max_size=7, unique=True))
    result = {key: draw(property_value()) for key in keys}
    if _chance(draw, 5):
        flag_key = f"flag-{draw(st.integers(0, 5))}"
        result[f"$feature_enrollment/{flag_key}"] = draw(st.sampled_from([True, "true", False]))
    return result


@st.composite
def person(draw: Draw) -> dict[str, Any]:
    """Arguments of one evaluation: distinct id, groups, properties, device id."""
    groups: dict[str, Any] = {}
    group_props: dict[str, Any] = {}
    for name in ("company", "project"):
        if draw(st.booleans()):
            groups[name] = draw(st.sampled_from(["acme", "globex", "g-1", 42]))
            if draw(st.integers(0, 3)) > 0:
                group_props[name] = draw(properties())
    if _chance(draw, 6):
        group_props["unused"] = {"plan": "pro"}
    return {
        "distinct_id": draw(
            st.one_of(
                st.sampled_from([f"user-{i}" for i in range(40)]),
                st.text(st.characters(codec="utf-8"), max_size=12),
            )
        ),
        "groups": groups,
        "person_properties": draw(properties()),
        "group_properties": group_props,
        "device_id": draw(st.sampled_from([None, None, "", "device-1", "device-2"])),
    }
