"""Request-scoped context on contextvars: who is acting, in which session, with which tags.

asyncio copies the context into each task, so a context set inside a request handler's task
stays with that request and the tasks it spawns, and never leaks into other requests.

>>> with new_context():
...     identify_context("user-1")
...     tag("plan", "pro")
...     current_context().distinct_id
'user-1'
>>> current_context() is None
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "PostHogContext",
    "current_context",
    "identify_context",
    "new_context",
    "set_context_session",
    "tag",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PostHogContext:
    """An immutable snapshot of the current context; changes make a new one."""

    distinct_id: str | None = None
    session_id: str | None = None
    tags: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


_current: ContextVar[PostHogContext | None] = ContextVar("aioposthog_context", default=None)


def current_context() -> PostHogContext | None:
    """The active context, or None outside any."""
    return _current.get()


@contextmanager
def new_context(*, fresh: bool = False) -> Iterator[PostHogContext]:
    """Open a context for the duration of a ``with`` block (sync or async code alike).

    The new context inherits the distinct id, session and tags of the enclosing one unless
    ``fresh=True``. Captures inside it without a ``distinct_id`` use the context's.

    >>> with new_context():
    ...     identify_context("u1")
    ...     with new_context(fresh=True):
    ...         print(current_context().distinct_id)
    None
    """
    parent = _current.get()
    context = PostHogContext() if fresh or parent is None else parent
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def identify_context(distinct_id: str) -> None:
    """Set the distinct id for captures in the current context (and the tasks it spawns)."""
    if not isinstance(distinct_id, str) or not distinct_id:
        from ._exceptions import UsageError

        raise UsageError("identify_context() needs a non-empty string distinct_id")
    _current.set(replace(_current.get() or PostHogContext(), distinct_id=distinct_id))


def set_context_session(session_id: str) -> None:
    """Attach a session id: captures in this context carry it as ``$session_id``."""
    _current.set(replace(_current.get() or PostHogContext(), session_id=str(session_id)))


def tag(key: str, value: Any) -> None:
    """Add a property to every capture in the current context (an event's own value wins)."""
    context = _current.get() or PostHogContext()
    _current.set(replace(context, tags=MappingProxyType({**context.tags, key: value})))
