"""Evaluate compiled flags for one user: the entry point of local evaluation.

The engine is pure and synchronous: no I/O, no logging, no locks. It reproduces the
official SDK's local evaluation (posthog-python 7.91.1, ``only_evaluate_locally=True``)
result for result, including the properties that SDK adds before matching: the
``distinct_id`` person property (unless passed) and ``$group_key`` for every group passed
(group properties of groups not passed are ignored).

Undecided flags are reported, never guessed: :meth:`FlagEngine.evaluate` raises
:class:`InconclusiveMatch`, :meth:`FlagEngine.evaluate_all` lists them with their reason. The
caller then asks ``/flags``.

Where the official behaviour surprises (kept on purpose; details in each module): an
absent property is undecided even for ``is_not_set``; ``None`` reads ``"null"`` for the
string operators; relative dates ignore their sign; a ``False`` flag still gets the
``"false"`` payload; a static cohort sends the whole flag to the server; inside a group flag,
dependencies see the group key as distinct id and the group's properties; negation on a
nested cohort group is ignored; an invalid regex matches nothing for ``not_regex`` too.

Known departures, all on definitions the PostHog server does not produce: flags whose key
is not a string are ignored; a non-string variant key (or override) is an evaluation
error where the official SDK would return that object; non-object ``payloads`` count as
none; a genuine dependency or cohort cycle is an evaluation error where the official SDK
recurses until ``RecursionError``; ``deleted`` and ``super_groups`` are ignored, as there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from ._compile import CompiledDefinitions
from ._context import NO_CONTEXT, EvalContext
from ._errors import InconclusiveMatch, InconclusiveReason, ServerRequired, Undecided
from ._flag import CompiledFlag
from ._result import FlagResult

__all__ = ["FlagEngine"]

_NOT_FOUND = InconclusiveReason.FLAG_NOT_FOUND
_ERROR = InconclusiveReason.EVALUATION_ERROR
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _person_properties(
    distinct_id: Any, person_properties: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    # The caller's mapping is never modified; it is only copied when it lacks distinct_id.
    if not person_properties:
        return {"distinct_id": distinct_id}
    if "distinct_id" in person_properties:
        return person_properties
    return {**person_properties, "distinct_id": distinct_id}


def _group_properties(
    groups: Mapping[str, Any], group_properties: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    if not groups:
        return {}
    given = group_properties or {}
    return {name: {"$group_key": key, **(given.get(name) or {})} for name, key in groups.items()}


class FlagEngine:
    """Local flag evaluation over one set of compiled definitions.

    ``clock`` gives "now" for date filters (default: the system clock in UTC); a ``now``
    passed to a call wins. An engine is cheap: build a new one when definitions change.

    >>> from aioposthog._flags import compile_definitions
    >>> engine = FlagEngine(compile_definitions({"flags": [{"key": "beta", "active": True,
    ...     "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}}]}))
    >>> engine.evaluate("beta", "user-1").value
    True
    """

    __slots__ = ("_clock", "_flags", "_needs_groups", "_reads_distinct_id", "definitions")

    def __init__(
        self,
        definitions: CompiledDefinitions,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.definitions = definitions
        self._flags: Mapping[str, CompiledFlag] = dict(definitions.items())
        self._needs_groups = any(flag.needs_groups for flag in self._flags.values())
        self._reads_distinct_id = any(flag.reads_distinct_id for flag in self._flags.values())
        self._clock = clock

    def evaluate(
        self,
        key: str,
        distinct_id: str,
        *,
        groups: Mapping[str, str | int] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        device_id: str | None = None,
        now: datetime | None = None,
    ) -> FlagResult:
        """Evaluate one flag; raise :class:`InconclusiveMatch` if it cannot be decided here."""
        flag = self._flags.get(key)
        if flag is None:
            raise InconclusiveMatch(key, _NOT_FOUND)
        # What the flag cannot read is not built: the distinct_id person property, group
        # properties (only group flags and group conditions read them), the context.
        if flag.reads_distinct_id:
            person = _person_properties(distinct_id, person_properties)
        else:
            person = person_properties or _EMPTY
        if not groups:
            groups = group_props = _EMPTY
        elif flag.needs_groups:
            group_props = _group_properties(groups, group_properties)
        else:
            group_props = _EMPTY
        ctx = EvalContext(device_id, self._clock, now) if flag.needs_context else NO_CONTEXT
        try:
            if flag.direct:
                return flag.body(ctx, distinct_id, person, distinct_id, groups, group_props)
            return flag.evaluate(ctx, distinct_id, person, groups, group_props)
        except (Undecided, ServerRequired) as exc:
            raise InconclusiveMatch(key, exc.reason) from None
        except Exception as exc:
            raise InconclusiveMatch(key, _ERROR) from exc

    def evaluate_all(
        self,
        distinct_id: str,
        *,
        groups: Mapping[str, str | int] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        device_id: str | None = None,
        keys: Collection[str] | None = None,
        now: datetime | None = None,
    ) -> tuple[dict[str, FlagResult], dict[str, InconclusiveReason]]:
        """Evaluate every flag (or only ``keys``) for one user.

        Returns ``(results, inconclusive)``: results by key for the flags decided here, and
        the flags that were not, with why (a requested key with no definition is
        ``flag_not_found``). ``inconclusive`` can be used as the set of keys to ask the
        server about.
        """
        groups = groups or _EMPTY
        if self._reads_distinct_id:
            person = _person_properties(distinct_id, person_properties)
        else:
            person = person_properties or _EMPTY
        group_props = _group_properties(groups, group_properties) if self._needs_groups else _EMPTY
        shared = EvalContext(device_id, self._clock, now)
        results: dict[str, FlagResult] = {}
        inconclusive: dict[str, InconclusiveReason] = {}
        flags = self._flags
        if keys is None:
            selected: Iterable[tuple[str, CompiledFlag]] = flags.items()
        else:
            wanted = set(keys)
            selected = [(key, flag) for key, flag in flags.items() if key in wanted]
            for key in wanted.difference(flags):
                inconclusive[key] = _NOT_FOUND
        for key, flag in selected:
            ctx = NO_CONTEXT
            if flag.needs_context:
                ctx = shared  # one clock reading for all flags; a dependency cache per flag
                if ctx.cache:
                    ctx.cache = {}
            try:
                if flag.direct:
                    results[key] = flag.body(
                        ctx, distinct_id, person, distinct_id, groups, group_props
                    )
                else:
                    results[key] = flag.evaluate(ctx, distinct_id, person, groups, group_props)
            except (Undecided, ServerRequired) as exc:
                inconclusive[key] = exc.reason
            except Exception:
                inconclusive[key] = _ERROR
        return results, inconclusive
