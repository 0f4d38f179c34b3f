"""Compiled cohorts, flag dependencies and the constant filters malformed pieces become.

Cohorts (``{"type": "AND"|"OR", "values": [...]}``, nested, entries negatable) follow the
official SDK closely, surprises included:

- every entry of a group is evaluated (an undecided entry does not stop the group, and a
  later entry may still need the server), unless the result is known and the rest cannot
  raise anything but "undecided" and has no side effect;
- a decisive entry (``False`` under AND, ``True`` under OR) beats undecided ones;
- ``negation`` is ignored on nested groups;
- a malformed group or entry, or a cohort missing from ``cohorts`` (a static cohort), sends
  the whole flag to the server.

A flag dependency (``{"type": "flag", "operator": "flag_evaluates_to", "key", "value",
"dependency_chain"}``) evaluates the chain in order into the per-flag cache, then compares
the referenced flag's value: a variant matches ``true`` or its own name, a boolean matches
the same boolean. A malformed shape (other operator, no key, ``null`` value) is a plain
non-match; a missing, non-list or empty (circular) chain is undecided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._context import EvalContext, Node
from ._errors import (
    UNRESOLVED,
    UNSUPPORTED,
    InconclusiveReason,
    Malformed,
    ServerRequired,
    Undecided,
    pick,
)

if TYPE_CHECKING:
    from ._flag import CompiledFlag

__all__ = [
    "CohortFilter",
    "Constant",
    "FlagDependency",
    "MalformedFilter",
    "NeedsServer",
    "PropertyGroup",
    "UndecidedFilter",
]


class Constant(Node):
    """Always the same answer (an empty group, a malformed dependency shape)."""

    __slots__ = ("value",)
    pure = True

    def __init__(self, value: bool) -> None:
        self.value = value

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        return self.value


class UndecidedFilter(Node):
    """Always undecided for the same reason (unknown cohort operator, bad chain, ...)."""

    __slots__ = ("reason",)
    pure = True

    def __init__(self, reason: InconclusiveReason) -> None:
        self.reason = reason

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        raise Undecided(self.reason)


class NeedsServer(Node):
    """A static cohort or a malformed cohort group: only the server can evaluate it."""

    __slots__ = ()
    pure = False

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        raise ServerRequired()


class MalformedFilter(Node):
    """A filter that is not an object, or a cohort that contains itself."""

    __slots__ = ()
    pure = False

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        raise Malformed("malformed filter")


class PropertyGroup(Node):
    """An AND/OR group of cohort entries, each ``(node, negated)``."""

    __slots__ = ("entries", "is_and", "pure", "steps")

    def __init__(self, is_and: bool) -> None:
        self.is_and = is_and
        self.entries: Sequence[tuple[Node, bool]] = ()
        # (node, negated, whether it and every later entry are pure), for ``match``.
        self.steps: Sequence[tuple[Node, bool, bool]] = ()
        self.pure = False

    def seal(self, entries: Sequence[tuple[Node, bool]]) -> None:
        """Set the entries (after they compiled, so that a cohort can refer back)."""
        self.entries = tuple(entries)
        rest: list[bool] = []
        pure = True
        for node, _negated in reversed(self.entries):
            pure = pure and node.pure
            rest.append(pure)
        self.steps = tuple(
            (node, negated, rest_pure)
            for (node, negated), rest_pure in zip(self.entries, reversed(rest), strict=True)
        )
        self.pure = pure

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        is_and = self.is_and
        decided: bool | None = None
        reason: InconclusiveReason | None = None
        for node, negated, rest_pure in self.steps:
            if decided is not None and rest_pure:
                return decided
            try:
                matched = node.match(ctx, distinct_id, props) is not negated
            except Undecided as exc:
                reason = pick(reason, exc.reason)
                continue
            if matched is not is_and:
                decided = matched
        if decided is not None:
            return decided
        if reason is not None:
            raise Undecided(reason)
        return is_and


class CohortFilter(Node):
    """``{"type": "cohort", "value": id, "operator": "in"|"not_in"|"exact"}``."""

    __slots__ = ("group", "negate", "pure")

    def __init__(self, group: Node, negate: bool) -> None:
        self.group = group
        self.negate = negate
        self.pure = group.pure

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        return self.group.match(ctx, distinct_id, props) is not self.negate


_UNHASHABLE: Any = object()


def _matches_expected(expected: Any, actual: Any) -> bool:
    if isinstance(actual, str) and actual:
        if isinstance(expected, bool):
            return expected  # any variant counts as enabled
        return isinstance(expected, str) and actual == expected
    return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected


class FlagDependency(Node):
    """A condition on another flag's value, evaluated through its dependency chain."""

    __slots__ = ("chain", "expected", "key", "key_hashable", "key_known")
    pure = False

    def __init__(
        self,
        key: Any,
        expected: Any,
        chain: Sequence[tuple[Any, CompiledFlag | None]],
        known_keys: Mapping[str, object],
    ) -> None:
        self.expected = expected
        self.chain = tuple((item if _hashable(item) else _UNHASHABLE, flag) for item, flag in chain)
        self.key_hashable = _hashable(key)
        self.key = key if self.key_hashable else None
        self.key_known = self.key_hashable and key in known_keys

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        cache = ctx.cache
        # A dependency without a definition outranks one that is merely undecided, so the
        # whole chain is checked before any of it is evaluated.
        for item, flag in self.chain:
            if item is _UNHASHABLE:
                raise Malformed("unhashable dependency key")
            if flag is None and item not in cache:
                cache[item] = None
                raise Undecided(UNSUPPORTED)
        for item, flag in self.chain:
            if item not in cache and flag is not None:
                flag.evaluate_as_dependency(ctx, distinct_id, props)
        if not self.key_hashable:
            raise Malformed("unhashable dependency key")
        actual = cache.get(self.key)
        if actual is None:
            known = self.key_known and self.key in cache
            raise Undecided(UNRESOLVED if known else UNSUPPORTED)
        return _matches_expected(self.expected, actual)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
