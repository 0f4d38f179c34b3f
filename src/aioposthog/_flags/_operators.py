"""Property filters (``{"key", "operator", "value"}``) compiled into matchers.

Every filter value is parsed here, once: texts lower-cased, numbers, dates, versions and
regexes parsed, so that matching a person only reads its property. The semantics are the
official SDK's, including its less obvious choices:

- an absent property is undecided for every operator, ``is_not_set`` included;
- ``None`` is compared as ``"null"`` by ``exact``/``is_not`` and the string operators (so
  ``icontains "nu"`` matches it) but never matches the date and semver operators;
- ``exact`` and ``is_not`` compare Unicode-lower-cased JSON texts; under
  ``property_matching_version`` other than 2, a boolean-like filter (``true``, ``"False"``,
  ``["true", "false"]``) compares truth values instead, and an empty list matches values
  that read true (``[]`` included);
- the string operators lower-case ASCII letters only;
- an invalid regex matches nothing, for ``regex`` and ``not_regex`` alike;
- when the property is missing and the filter value is unusable, the reason is the
  definition's (``unsupported_definition``), not the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ._context import EvalContext, Node
from ._dates import DateSpec, as_comparable, compile_date
from ._errors import MISSING, UNSUPPORTED, Malformed, Undecided
from ._regex import PortableRegex, RegexUnsupported, compile_portable, search
from ._semver import Version, parse_version, range_bounds, read_version
from ._values import (
    ASCII_LOWER,
    NotJSON,
    ascii_lower,
    is_boolean_like,
    parse_number,
    reads_true,
    to_text,
)

__all__ = [
    "OPERATORS",
    "Date",
    "PropertyFilter",
    "UnknownOperator",
    "UnusableKey",
    "compile_property",
    "filter_supported",
]

_TEXT_OPERATORS = frozenset(
    {"icontains", "not_icontains", "starts_with", "not_starts_with", "ends_with", "not_ends_with"}
)
_NUMERIC_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
_DATE_OPERATORS = frozenset({"is_date_before", "is_date_after"})
_SEMVER_COMPARISONS = frozenset(
    {"semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte"}
)
_SEMVER_RANGES = frozenset({"semver_tilde", "semver_caret", "semver_wildcard"})
OPERATORS = frozenset(
    {"exact", "is_not", "is_set", "is_not_set", "regex", "not_regex"}
    | _TEXT_OPERATORS
    | _NUMERIC_OPERATORS
    | _DATE_OPERATORS
    | _SEMVER_COMPARISONS
    | _SEMVER_RANGES
)

_ABSENT: Any = object()
_REGEX_EMPTY = "empty"
_REGEX_INVALID = "invalid"
_REGEX_UNSUPPORTED = "unsupported"

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "semver_eq": lambda a, b: a == b,
    "semver_neq": lambda a, b: a != b,
    "semver_gt": lambda a, b: a > b,
    "semver_gte": lambda a, b: a >= b,
    "semver_lt": lambda a, b: a < b,
    "semver_lte": lambda a, b: a <= b,
    "is_date_before": lambda a, b: a < b,
    "is_date_after": lambda a, b: a > b,
}


def _text(value: Any) -> str:
    return value if type(value) is str else to_text(value)


class UnknownOperator(Node):
    """An operator this SDK does not know: always left to the server."""

    __slots__ = ()
    pure = True

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        raise Undecided(UNSUPPORTED)


class UnusableKey(Node):
    """A key that cannot be looked up (a list, say): the official SDK raises ``TypeError``."""

    __slots__ = ()
    pure = False

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        raise Malformed("unhashable property key")


class PropertyFilter(Node):
    """A filter on one property, ``key``: the base of the operators' matchers."""

    __slots__ = ("key", "missing")
    pure = True

    def __init__(self, key: Any, supported: bool) -> None:
        self.key = key
        self.missing = MISSING if supported else UNSUPPORTED


class Presence(PropertyFilter):
    """``is_set``/``is_not_set``: decided only when the property was passed."""

    __slots__ = ("result",)

    def __init__(self, key: Any, is_set: bool) -> None:
        super().__init__(key, True)
        self.result = is_set

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        if self.key in props:
            return self.result
        raise Undecided(MISSING)


class Exact(PropertyFilter):
    """``exact``/``is_not`` against one value, a list of values or a truth value."""

    __slots__ = ("candidates", "mode", "negate", "truth", "usable")

    def __init__(self, key: Any, value: Any, negate: bool, version2: bool) -> None:
        self.negate = negate
        self.truth = False
        self.candidates: frozenset[str] = frozenset()
        self.usable = True
        items = value if isinstance(value, list) else [value]
        try:
            texts = [to_text(item).lower() for item in items]
        except NotJSON:
            texts = []
            self.usable = False
        super().__init__(key, self.usable)
        if value == []:
            self.mode = "truthy"
        elif not version2 and is_boolean_like(value):
            self.mode = "truth"
            self.truth = reads_true(value)
        else:
            self.mode = "text"
            self.candidates = frozenset(texts)

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        value = props.get(self.key, _ABSENT)
        if value is _ABSENT:
            raise Undecided(self.missing)
        if type(value) is str:
            text = value.lower()
        else:
            try:
                text = to_text(value).lower()
            except NotJSON:
                raise Undecided(self.missing) from None
        mode = self.mode
        if mode == "text":
            if not self.usable:
                raise Undecided(UNSUPPORTED)
            return (text in self.candidates) is not self.negate
        if mode == "truth":
            return (reads_true(value) is self.truth) is not self.negate
        return reads_true(value) is not self.negate


class Text(PropertyFilter):
    """``icontains``, ``starts_with``, ``ends_with`` and their negations (ASCII case-folded)."""

    __slots__ = ("kind", "needle", "negate")

    def __init__(self, key: Any, operator: str, value: Any) -> None:
        try:
            self.needle: str | None = ascii_lower(to_text(value))
        except NotJSON:
            self.needle = None
        super().__init__(key, self.needle is not None)
        self.negate = operator.startswith("not_")
        self.kind = operator.removeprefix("not_")

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        value = props.get(self.key, _ABSENT)
        if value is _ABSENT:
            raise Undecided(self.missing)
        if type(value) is str:
            text = value.lower() if value.isascii() else value.translate(ASCII_LOWER)
        else:
            try:
                text = ascii_lower(to_text(value))
            except NotJSON:
                raise Undecided(self.missing) from None
        needle = self.needle
        if needle is None:
            raise Undecided(UNSUPPORTED)
        kind = self.kind
        if kind == "icontains":
            found = needle in text
        elif kind == "starts_with":
            found = text.startswith(needle)
        else:
            found = text.endswith(needle)
        return found is not self.negate


class Regex(PropertyFilter):
    """``regex``/``not_regex`` with a pattern both engines read alike."""

    __slots__ = ("negate", "regex", "state")

    def __init__(self, key: Any, negate: bool, value: Any) -> None:
        pattern = str(value)
        self.regex: PortableRegex | None = None
        self.state = ""
        if pattern == "":
            self.state = _REGEX_EMPTY
        else:
            try:
                self.regex = compile_portable(pattern)
            except RegexUnsupported:
                self.state = _REGEX_UNSUPPORTED
            else:
                if self.regex is None:
                    self.state = _REGEX_INVALID
        super().__init__(key, self.state != _REGEX_UNSUPPORTED)
        self.negate = negate

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        value = props.get(self.key, _ABSENT)
        if value is _ABSENT:
            raise Undecided(self.missing)
        try:
            text = _text(value)
        except NotJSON:
            raise Undecided(self.missing) from None
        regex = self.regex
        if regex is not None:
            try:
                return search(regex, text) is not self.negate
            except RegexUnsupported:
                raise Undecided(UNSUPPORTED) from None
        state = self.state
        if state == _REGEX_EMPTY:
            return not self.negate
        if state == _REGEX_INVALID:
            return False
        raise Undecided(UNSUPPORTED)


class Numeric(PropertyFilter):
    """``gt``/``gte``/``lt``/``lte``; a property that is not a number does not match."""

    __slots__ = ("compare", "threshold")

    def __init__(self, key: Any, operator: str, value: Any) -> None:
        self.threshold = parse_number(value)
        super().__init__(key, self.threshold is not None)
        self.compare = _COMPARE[operator]

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        value = props.get(self.key, _ABSENT)
        if value is _ABSENT:
            raise Undecided(self.missing)
        threshold = self.threshold
        if threshold is None:
            raise Undecided(UNSUPPORTED)
        number = parse_number(value)
        return number is not None and self.compare(number, threshold)


class Date(PropertyFilter):
    """``is_date_before``/``is_date_after`` against a fixed, bare-year or relative date."""

    __slots__ = ("compare", "spec")

    def __init__(self, key: Any, operator: str, value: Any) -> None:
        self.spec: DateSpec = compile_date(value)
        super().__init__(key, self.spec.now_dependent or self.spec.fixed is not None)
        self.compare = _COMPARE[operator]

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        value = props.get(self.key, _ABSENT)
        spec = self.spec
        if value is _ABSENT:
            if spec.now_dependent and spec.resolve(ctx.now()) is None:
                raise Undecided(UNSUPPORTED)
            raise Undecided(self.missing)
        if value is None:
            return False
        now = ctx.now()
        target = spec.resolve(now)
        if target is None:
            raise Undecided(UNSUPPORTED)
        try:
            left, right = as_comparable(value, target, now)
        except Exception:
            raise Undecided(MISSING) from None
        return self.compare(left, right)


class Semver(PropertyFilter):
    """``semver_*`` comparisons and the ``~``, ``^`` and wildcard ranges."""

    __slots__ = ("bounds", "compare", "version")

    def __init__(self, key: Any, operator: str, value: Any) -> None:
        self.version: Version | None = None
        self.bounds: tuple[Version, Version] | None = None
        try:
            if operator in _SEMVER_RANGES:
                self.bounds = range_bounds(operator, value)
            else:
                self.version = parse_version(value)
        except (ValueError, TypeError):
            pass
        super().__init__(key, self.version is not None or self.bounds is not None)
        self.compare = _COMPARE.get(operator, _COMPARE["semver_eq"])

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        value = props.get(self.key, _ABSENT)
        if value is _ABSENT:
            raise Undecided(self.missing)
        if value is None:
            return False
        if self.missing is UNSUPPORTED:
            raise Undecided(UNSUPPORTED)
        if type(value) is str:
            version: Version | None = read_version(value)
        else:
            try:
                version = parse_version(value)
            except (ValueError, TypeError):
                version = None
        if version is None:
            raise Undecided(MISSING)
        bounds = self.bounds
        if bounds is not None:
            return bounds[0] <= version < bounds[1]
        return self.compare(version, self.version)


def compile_property(prop: Mapping[str, Any], version2: bool) -> Node:
    """Compile one property filter; ``version2`` is ``property_matching_version == 2``."""
    operator = prop.get("operator") or "exact"
    if not isinstance(operator, str) or operator not in OPERATORS:
        return UnknownOperator()
    key = prop.get("key")
    try:
        hash(key)
    except TypeError:
        return UnusableKey()
    value = prop.get("value")
    if operator in ("exact", "is_not"):
        return Exact(key, value, operator == "is_not", version2)
    if operator in ("is_set", "is_not_set"):
        return Presence(key, operator == "is_set")
    if operator in _TEXT_OPERATORS:
        return Text(key, operator, value)
    if operator in ("regex", "not_regex"):
        return Regex(key, operator == "not_regex", value)
    if operator in _NUMERIC_OPERATORS:
        return Numeric(key, operator, value)
    if operator in _DATE_OPERATORS:
        return Date(key, operator, value)
    return Semver(key, operator, value)


def filter_supported(prop: Mapping[str, Any], now: datetime) -> bool:
    """Whether local evaluation can use this filter whatever the call passes.

    Only the operator and the value matter (the key is not looked at); a relative date is
    checked against ``now``.
    """
    node = compile_property({**prop, "key": None}, version2=False)
    if isinstance(node, Date) and node.spec.now_dependent:
        return node.spec.resolve(now) is not None
    return isinstance(node, PropertyFilter) and node.missing is MISSING
