"""What one evaluation carries around, and the shape every compiled filter has."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["EvalContext", "FlagValue", "Node"]

FlagValue = bool | str


class EvalContext:
    """Per-call state: the device id, the clock, the flag-dependency cache, a hash memo.

    ``cache`` maps a dependency's key to its value, or to ``None`` when it could not be
    decided; it lives for one top-level flag, as in the official SDK, because a later
    condition can see what an earlier one left there.
    """

    __slots__ = (
        "_now",
        "cache",
        "clock",
        "device_id",
        "hash_input",
        "hash_owner",
        "hash_value",
        "visiting",
    )

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
        # The last rollout hash, so that several conditions of a flag hash only once.
        self.hash_owner: object = None
        self.hash_input: Any = None
        self.hash_value = 0.0

    def now(self) -> datetime:
        """The evaluation's "now" as an aware datetime, read from the clock once."""
        now = self._now
        if now is None:
            now = self.clock()
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
            self._now = now
        return now


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
