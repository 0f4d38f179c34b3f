"""Shared helpers for the flag-engine tests: fixture loading and tagged-value decoding."""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def load_fixture(name: str) -> Any:
    """The ``data`` of ``fixtures/<name>.json`` (each file also says where it comes from)."""
    with (FIXTURES / f"{name}.json").open(encoding="utf-8") as handle:
        return json.load(handle)["data"]


def decode(value: Any) -> Any:
    """Undo the fixtures' tags for values JSON cannot carry (NaN, Decimal, dates)."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, text),) = value.items()
            if tag == "$float":
                return float(text)
            if tag == "$decimal":
                return Decimal(text)
            if tag == "$datetime":
                return datetime.fromisoformat(text)
            if tag == "$date":
                return date.fromisoformat(text)
        return {name: decode(item) for name, item in value.items()}
    return value


@contextmanager
def frozen_official_clock(now: datetime) -> Iterator[None]:
    """Make the official SDK's ``datetime.now()`` return ``now`` (its module only)."""
    flags_module = pytest.importorskip("posthog.feature_flags")

    class _Meta(type):
        def __instancecheck__(cls, instance: object) -> bool:
            return isinstance(instance, datetime)

    class _Frozen(datetime, metaclass=_Meta):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            if tz is None:
                return now.astimezone().replace(tzinfo=None)
            return now.astimezone(tz)

    module = flags_module.datetime
    shim = types.SimpleNamespace(**{name: getattr(module, name) for name in dir(module)})
    shim.datetime = _Frozen
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flags_module, "datetime", shim)
        yield
