"""Which ``$feature_flag_called`` events were already sent, in a bounded map.

PostHog needs one ``$feature_flag_called`` per (distinct_id, flag, response, groups) to
attribute experiments; sending it on every check would bill an event per flag per request.
The map holds at most ``max_distinct_ids`` distinct ids; past that the least recently seen id
is evicted (never the whole map at once, as some SDKs do, which re-sends a burst of events).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

__all__ = ["CalledEvents"]

DedupKey = tuple[str, str, tuple[tuple[str, str], ...]]


class CalledEvents:
    """A least-recently-used map from distinct id to the flag reads already reported."""

    def __init__(self, max_distinct_ids: int = 50_000) -> None:
        self.max_distinct_ids = max_distinct_ids
        self._seen: OrderedDict[str, set[DedupKey]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(
        self, distinct_id: str, key: str, response: Any, groups: Mapping[str, Any] | None
    ) -> bool:
        """Record this read; True if it was not reported before (so send the event now)."""
        groups_key = tuple(sorted((str(k), str(v)) for k, v in groups.items())) if groups else ()
        entry: DedupKey = (key, repr(response), groups_key)
        seen = self._seen.get(distinct_id)
        if seen is None:
            seen = self._seen[distinct_id] = set()
            if len(self._seen) > self.max_distinct_ids:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(distinct_id)
        if entry in seen:
            return False
        seen.add(entry)
        return True
