"""Why a local evaluation could not decide, and the signals that carry it.

```
Exception
 +-- InconclusiveMatch      public: local evaluation cannot decide, ask /flags
 +-- Undecided              internal: a filter or condition could not be decided;
 |                          the next condition may still decide the flag
 +-- ServerRequired         internal: stop at once and ask the server (static cohort,
                            malformed cohort, dependency needing the server)
```

The split between ``Undecided`` and ``ServerRequired`` mirrors the official SDK's
``InconclusiveMatchError`` and ``RequiresServerEvaluation``: they steer different control
flow (try the next condition, or stop), so the engine keeps both. Any other exception
raised while matching stands for the official SDK's "unexpected error" path (a malformed
definition that makes its code raise ``TypeError`` and the like); the engine reproduces where
such errors surface so that the same flags come out decided.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["InconclusiveMatch", "InconclusiveReason"]


class InconclusiveReason(StrEnum):
    """Why a flag could not be evaluated locally.

    The first four match the official SDK's ``UnresolvedFlagReason`` values and follow its
    precedence (the first applicable one wins). The last two are ours.
    """

    EXPERIENCE_CONTINUITY = "experience_continuity"
    """The flag has ``ensure_experience_continuity``: only the server can evaluate it."""
    UNSUPPORTED_DEFINITION = "unsupported_definition"
    """Static cohort, unknown operator, unparsable filter value, missing dependency, ..."""
    UNRESOLVED_DEPENDENCY = "unresolved_dependency"
    """A flag this flag depends on could not be decided locally."""
    MISSING_CONTEXT = "missing_context"
    """A person/group property, the group properties or the device id were not passed."""
    FLAG_NOT_FOUND = "flag_not_found"
    """No local definition has this key (it may be newer than the last poll)."""
    EVALUATION_ERROR = "evaluation_error"
    """The definition is malformed in a way that makes evaluation fail."""


_RANK = {
    InconclusiveReason.EXPERIENCE_CONTINUITY: 0,
    InconclusiveReason.UNSUPPORTED_DEFINITION: 1,
    InconclusiveReason.UNRESOLVED_DEPENDENCY: 2,
    InconclusiveReason.MISSING_CONTEXT: 3,
    InconclusiveReason.FLAG_NOT_FOUND: 4,
    InconclusiveReason.EVALUATION_ERROR: 5,
}


def pick(current: InconclusiveReason | None, new: InconclusiveReason) -> InconclusiveReason:
    """Return the reason of higher precedence (``current`` may be unset)."""
    if current is None or _RANK[new] < _RANK[current]:
        return new
    return current


class InconclusiveMatch(Exception):
    """Local evaluation cannot decide this flag; the caller should ask ``/flags``.

    ``reason`` says why, ``key`` names the flag.
    """

    def __init__(self, key: str, reason: InconclusiveReason) -> None:
        super().__init__(f"flag {key!r} cannot be evaluated locally: {reason.value}")
        self.key = key
        self.reason = reason


class Undecided(Exception):
    """A filter, condition or flag body could not be decided (try the next condition)."""

    __slots__ = ("reason",)

    def __init__(self, reason: InconclusiveReason) -> None:
        self.reason = reason


class ServerRequired(Exception):
    """Stop evaluating this flag: it needs data only the server has."""

    __slots__ = ("reason",)

    def __init__(
        self, reason: InconclusiveReason = InconclusiveReason.UNSUPPORTED_DEFINITION
    ) -> None:
        self.reason = reason


class Malformed(Exception):
    """Raised where the official SDK would hit an unexpected error on a malformed piece."""


MISSING = InconclusiveReason.MISSING_CONTEXT
UNSUPPORTED = InconclusiveReason.UNSUPPORTED_DEFINITION
UNRESOLVED = InconclusiveReason.UNRESOLVED_DEPENDENCY
CONTINUITY = InconclusiveReason.EXPERIENCE_CONTINUITY
