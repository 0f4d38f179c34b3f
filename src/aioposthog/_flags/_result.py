"""What a local evaluation returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["FlagResult", "MatchReason"]


class MatchReason(StrEnum):
    """Why a locally evaluated flag has its value."""

    CONDITION_MATCH = "condition_match"
    """A release condition matched; ``condition_index`` says which."""
    NO_CONDITION_MATCH = "no_condition_match"
    """No condition matched (or the flag has none)."""
    OUT_OF_ROLLOUT_BOUND = "out_of_rollout_bound"
    """A condition's filters matched but its rollout percentage left the user out."""
    FLAG_DISABLED = "flag_disabled"
    """The flag is not active."""
    NO_GROUP_TYPE = "no_group_type"
    """A group flag, and its group type was not passed in ``groups``."""
    HOLDOUT = "holdout"
    """The user is in the flag's holdout group; the value is ``"holdout-<id>"``."""
    FEATURE_ENROLLMENT = "feature_enrollment"
    """An early-access flag decided by the ``$feature_enrollment/<key>`` property."""


@dataclass(frozen=True, slots=True)
class FlagResult:
    """A flag's value for one user, decided locally.

    ``value`` is ``False``, ``True`` or a variant name. ``payload`` is the JSON payload
    configured for that value, decoded (``None`` if there is none or it is not valid JSON);
    as in the official SDK, a ``False`` value gets the ``"false"`` payload when one is set.
    Results are shared between evaluations: treat ``payload`` as read-only.

    >>> FlagResult("beta", "test", None, MatchReason.CONDITION_MATCH, 0, 7, 3).variant
    'test'
    """

    key: str
    value: bool | str
    payload: Any
    reason: MatchReason | str | None
    condition_index: int | None
    flag_id: int | None
    version: int | None
    locally_evaluated: bool = True
    request_id: str | None = None
    """The ``/flags`` request that decided a remotely evaluated flag."""

    @property
    def enabled(self) -> bool:
        """Whether the flag is on (a variant counts as on)."""
        return self.value is not False

    @property
    def variant(self) -> str | None:
        """The variant name, or ``None`` for a boolean flag."""
        return self.value if isinstance(self.value, str) else None
