"""`FeatureFlagEvaluations`: every flag for one user, evaluated once, read many times."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._result import FlagResult

__all__ = ["EvaluatedFlag", "FeatureFlagEvaluations"]


# One flag's value for one user, with where it came from: the engine's own result type,
# shared by remotely evaluated flags (``locally_evaluated=False``, with a ``request_id``).
EvaluatedFlag = FlagResult


class FeatureFlagEvaluations:
    """A snapshot of a user's flags from `AsyncPostHog.evaluate_flags()`.

    Reading a flag (`is_enabled`, `get_flag`) reports a ``$feature_flag_called`` event, once
    per flag and value; passing the snapshot to ``capture(..., flags=snapshot)`` attaches
    ``$feature/<key>`` and ``$active_feature_flags`` with exactly the values the code
    branched on, at no extra network cost.

    >>> beta = EvaluatedFlag("beta", True, None, "condition_match", 0, 1, 1)
    >>> flags = FeatureFlagEvaluations("u1", {"beta": beta})
    >>> flags.is_enabled("beta"), flags.get_flag("missing")
    (True, None)
    """

    def __init__(
        self,
        distinct_id: str,
        flags: Mapping[str, EvaluatedFlag],
        *,
        groups: Mapping[str, Any] | None = None,
        error: str | None = None,
        on_read: Callable[[FeatureFlagEvaluations, str, EvaluatedFlag | None], None] | None = None,
    ) -> None:
        self.distinct_id = distinct_id
        self.groups = dict(groups or {})
        self.error = error
        """Why some flags may be missing (``$feature_flag_error`` value), if a call failed."""
        self._flags = dict(flags)
        self._on_read = on_read

    def __repr__(self) -> str:
        return f"<FeatureFlagEvaluations {len(self._flags)} flags>"

    def __contains__(self, key: object) -> bool:
        return key in self._flags

    def __iter__(self) -> Iterator[str]:
        return iter(self._flags)

    def __len__(self) -> int:
        return len(self._flags)

    def _read(self, key: str) -> EvaluatedFlag | None:
        flag = self._flags.get(key)
        if self._on_read is not None:
            self._on_read(self, key, flag)
        return flag

    def is_enabled(self, key: str) -> bool:
        """Whether the flag is on for this user (False when unknown)."""
        flag = self._read(key)
        return flag is not None and flag.enabled

    def get_flag(self, key: str) -> bool | str | None:
        """The flag's value: a variant, True/False, or None when unknown."""
        flag = self._read(key)
        return None if flag is None else flag.value

    def get_flag_payload(self, key: str) -> Any:
        """The flag's payload for this user's value (no event is reported for a payload read)."""
        flag = self._flags.get(key)
        return None if flag is None else flag.payload

    def get(self, key: str) -> EvaluatedFlag | None:
        """The full record of a flag, without reporting a read."""
        return self._flags.get(key)

    def as_dict(self) -> dict[str, bool | str]:
        """Every flag's value, without reporting reads."""
        return {key: flag.value for key, flag in self._flags.items()}

    def event_properties(self) -> dict[str, Any]:
        """``$feature/<key>`` for every flag and the sorted ``$active_feature_flags``."""
        properties: dict[str, Any] = {f"$feature/{k}": f.value for k, f in self._flags.items()}
        properties["$active_feature_flags"] = sorted(
            key for key, flag in self._flags.items() if flag.enabled
        )
        return properties
