"""Twenty realistic flag definitions, for the demo, the benchmarks and users' own tests."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["sample_flag_definitions", "sample_person"]


def _person(key: str, operator: str, value: Any) -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value, "type": "person"}


def _flag(
    flag_id: int,
    key: str,
    groups: list[dict[str, Any]],
    *,
    variants: list[tuple[str, int]] | None = None,
    payloads: dict[str, str] | None = None,
    group_type: int | None = None,
    active: bool = True,
) -> dict[str, Any]:
    filters: dict[str, Any] = {"groups": groups}
    if variants:
        filters["multivariate"] = {
            "variants": [{"key": k, "rollout_percentage": p} for k, p in variants]
        }
    if payloads:
        filters["payloads"] = payloads
    if group_type is not None:
        filters["aggregation_group_type_index"] = group_type
    return {
        "id": flag_id,
        "key": key,
        "name": key.replace("-", " "),
        "active": active,
        "deleted": False,
        "version": 1,
        "ensure_experience_continuity": False,
        "filters": filters,
    }


def _rollout(percentage: float, *properties: dict[str, Any]) -> dict[str, Any]:
    return {"properties": list(properties), "rollout_percentage": percentage}


_DEFINITIONS: dict[str, Any] = {
    "flags": [
        _flag(1, "new-onboarding", [_rollout(30)]),
        _flag(2, "dark-mode", [_rollout(100)]),
        _flag(3, "beta-dashboard", [_rollout(100, _person("email", "icontains", "@acme.io"))]),
        _flag(
            4,
            "eu-pricing",
            [_rollout(100, _person("country", "exact", ["DE", "FR", "NL", "ES", "IT"]))],
        ),
        _flag(
            5,
            "checkout-experiment",
            [_rollout(100)],
            variants=[("control", 34), ("one-page", 33), ("express", 33)],
            payloads={
                "control": '{"steps": 3}',
                "one-page": '{"steps": 1}',
                "express": '{"steps": 1, "wallet": true}',
            },
        ),
        _flag(6, "power-users", [_rollout(100, _person("sessions_30d", "gte", 20))]),
        _flag(7, "legacy-api", [_rollout(100, _person("signup_year", "lt", 2021))]),
        _flag(
            8,
            "mobile-redesign",
            [
                _rollout(
                    50,
                    _person("$os", "exact", ["iOS", "Android"]),
                    _person("app_version", "semver_gte", "4.2.0"),
                )
            ],
        ),
        _flag(
            9, "recent-signups", [_rollout(100, _person("signed_up_at", "is_date_after", "-30d"))]
        ),
        _flag(
            10,
            "enterprise-features",
            [_rollout(100)],
            group_type=0,
        ),
        _flag(11, "vip-support", [_rollout(100, {"key": "id", "value": 101, "type": "cohort"})]),
        _flag(
            12,
            "search-v2",
            [_rollout(20), _rollout(100, _person("plan", "exact", ["pro", "enterprise"]))],
        ),
        _flag(13, "kill-switch-payments", [_rollout(0)]),
        _flag(
            14,
            "pricing-page-test",
            [_rollout(100, _person("country", "is_set", "is_set"))],
            variants=[("control", 50), ("annual-first", 50)],
            payloads={"annual-first": '{"default_period": "annual"}'},
        ),
        _flag(
            15, "internal-tools", [_rollout(100, _person("email", "regex", r"^[^@]+@acme\.io$"))]
        ),
        _flag(
            16,
            "ai-assistant",
            [
                _rollout(
                    100,
                    {
                        "key": "beta-dashboard",
                        "operator": "flag_evaluates_to",
                        "value": True,
                        "type": "flag",
                        "dependency_chain": ["beta-dashboard"],
                    },
                )
            ],
        ),
        _flag(17, "old-experiment", [_rollout(100)], active=False),
        _flag(
            18,
            "referral-banner",
            [_rollout(60, _person("plan", "is_not", "enterprise"))],
            payloads={"true": '{"reward": 20, "currency": "EUR"}'},
        ),
        _flag(19, "usage-based-billing", [_rollout(100, _person("seats", "gt", 50))], group_type=0),
        _flag(20, "gradual-rollout-infra", [_rollout(75)]),
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {
        "101": {
            "type": "OR",
            "values": [
                {
                    "type": "AND",
                    "values": [
                        _person("plan", "exact", ["enterprise"]),
                        _person("sessions_30d", "gt", 5),
                    ],
                },
                {"type": "AND", "values": [_person("email", "icontains", "@acme.io")]},
            ],
        }
    },
}


def sample_flag_definitions() -> dict[str, Any]:
    """A fresh copy of twenty realistic definitions (the ``/flags/definitions`` shape).

    They cover rollouts, person filters (exact lists, icontains, regex, numbers, semver,
    relative dates, is_set), multivariate flags with payloads, a nested cohort, two group
    flags, a flag dependency, an inactive flag and a kill switch.
    """
    return copy.deepcopy(_DEFINITIONS)


def sample_person(index: int) -> dict[str, Any]:
    """Person properties for user ``index`` that exercise every sample definition."""
    countries = ["US", "DE", "FR", "GB", "BR", "IN", "NL", "ES"]
    plans = ["free", "pro", "enterprise", "free", "pro"]
    return {
        "email": f"user{index}@{'acme.io' if index % 7 == 0 else 'example.com'}",
        "country": countries[index % len(countries)],
        "plan": plans[index % len(plans)],
        "sessions_30d": index % 40,
        "signup_year": 2017 + index % 9,
        "$os": ["iOS", "Android", "Mac OS X", "Windows"][index % 4],
        "app_version": f"4.{index % 5}.{index % 3}",
        "signed_up_at": f"2026-{1 + index % 12:02d}-15T00:00:00Z",
        "seats": index % 120,
    }
