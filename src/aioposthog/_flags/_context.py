"""What one evaluation carries around, and the shape every compiled filter has."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

__all__ = ["NO_CONTEXT", "EvalContext", "FlagValue", "Node"]

FlagValue = bool | str


class EvalContext:
    """Per-call state: the device id, the clock, the flag-dependency cache.

    ``cache`` maps a dependency's key to its value, or to ``None`` when it could not be
    decided; it lives for one top-level flag, as in the official SDK, because a later
    condition can see what an earlier one left there.
    """

    __slots__ = ("_now", "cache", "clock", "device_id", "visiting")

    def __init__(
        self,
        device_id: str | None,
        clock: Callable[[], datetime],
        now: datetime | None,
    ) -> None:
        self.device_id = device_id
        self.clock = clock
        self._now = now
        self.cache: dict[Any, FlagValue | None] = {}
        self.visiting: set[str] = set()

    def now(self) -> datetime:
        """The evaluation's "now" as an aware datetime, read from the clock once."""
        now = self._now
        if now is None:
            now = self.clock()
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
            self._now = now
        return now


def _no_clock() -> datetime:
    raise RuntimeError("NO_CONTEXT has no clock: the flag was wrongly compiled as clock-free")


NO_CONTEXT = EvalContext(None, _no_clock, None)
"""The context passed to flags that read no per-call state (no dates, no dependencies, no
device id), which are most flags: it spares them an allocation per call. The compiler decides
which flags those are (``CompiledFlag.needs_context``); should it be wrong, this context fails
loudly (no clock, a read-only cache, no ``visiting.add``) rather than share state between
calls or threads."""
NO_CONTEXT.cache = cast("dict[Any, FlagValue | None]", MappingProxyType({}))
NO_CONTEXT.visiting = cast("set[str]", frozenset())


class Node:
    """A compiled filter: ``match`` returns a bool or raises ``Undecided``/``ServerRequired``.

    ``pure`` says that matching has no side effect and raises nothing else, so a property
    group may stop early once its result is known.
    """

    __slots__ = ()
    pure: bool

    def match(self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]) -> bool:
        """Whether the filter holds for these properties."""
        raise NotImplementedError
