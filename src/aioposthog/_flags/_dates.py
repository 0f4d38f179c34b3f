"""Date values for ``is_date_before``/``is_date_after``, parsed once and resolved against now.

A filter value is either absolute (an ISO 8601 date or datetime, ``Z``/`` UTC``/`` +01:00``
suffixes allowed, naive meaning UTC), a bare four-digit year (that year on today's local
month and day, as ``dateutil`` used to read it), or relative: ``-?N[hdwmy]`` with ``N`` below
10,000, always *in the past* whatever the sign. Months and years are calendar-aware: the
day is clamped after every step, so March 31 minus two months is January 28.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

__all__ = ["DateSpec", "compile_date", "parse_datetime", "relative_date"]

_RELATIVE = re.compile(r"^-?(?P<number>[0-9]+)(?P<unit>[a-z])$")
_YEAR_ONLY = re.compile(r"\d{4}")
_SPACED_OFFSET = re.compile(r" ([+-]\d{2}:\d{2})$")


def _months_back(moment: datetime, months: int) -> datetime | None:
    start = moment.year * 12 + moment.month - 1
    target = start - months
    year, month_index = divmod(target, 12)
    if not 1 <= year <= 9999:
        return None
    day = moment.day
    index = start - 1
    # Each intermediate month may shorten the day; once at 28 no month can shorten it.
    while day > 28 and index >= target:
        day = min(day, calendar.monthrange(index // 12, index % 12 + 1)[1])
        index -= 1
    return moment.replace(year=year, month=month_index + 1, day=day)


def _years_back(moment: datetime, years: int) -> datetime | None:
    year = moment.year - years
    if not 1 <= year <= 9999:
        return None
    day = moment.day
    if years > 0 and moment.month == 2 and day == 29:
        day = 28  # the year before a leap year is never one
    return moment.replace(year=year, day=day)


def relative_date(text: str, now: datetime) -> datetime | None:
    """``now`` (UTC) moved back by a ``-?N[hdwmy]`` offset; ``None`` if not one or out of range.

    >>> relative_date("-1m", datetime(2024, 3, 31, tzinfo=UTC))
    datetime.datetime(2024, 2, 29, 0, 0, tzinfo=datetime.timezone.utc)
    """
    match = _RELATIVE.search(text)
    if match is None:
        return None
    number = int(match["number"])
    if number >= 10_000:
        return None
    return _shift(match["unit"], number, now)


def _shift(unit: str, number: int, now: datetime) -> datetime | None:
    if unit == "h":
        return now - timedelta(hours=number)
    if unit == "d":
        return now - timedelta(days=number)
    if unit == "w":
        return now - timedelta(weeks=number)
    if unit == "m":
        return _months_back(now, number)
    if unit == "y":
        return _years_back(now, number)
    return None


@lru_cache(maxsize=4096)
def _read(text: str) -> datetime | int | None:
    """An aware instant, a bare year (``int``: month and day come from now), or ``None``."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    elif value.upper().endswith(" UTC"):
        value = value[:-4] + "+00:00"
    elif _YEAR_ONLY.fullmatch(value):
        return int(value)
    try:
        parsed = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1", value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_datetime(text: str, now: datetime) -> datetime:
    """Parse an ISO-like date or datetime; naive results are UTC. Raise ``ValueError``.

    A bare four-digit year takes the month and day of ``now`` in local time.
    """
    read = _read(text)
    if read is None:
        raise ValueError(f"not a date: {text!r}")
    if isinstance(read, int):
        local = now.astimezone()
        return datetime(read, local.month, local.day, tzinfo=UTC)
    return read


@dataclass(frozen=True, slots=True)
class DateSpec:
    """A filter's date, ready to resolve against a clock.

    Exactly one of the shapes is set: ``fixed`` (absolute), ``year`` (bare year) or
    ``unit``/``number`` (relative; ``fallback`` is what the text reads as when the offset
    is out of range; ``delta`` is the offset of the fixed-length units, hours to weeks).
    ``resolve`` returns ``None`` for a value that is not a date.
    """

    fixed: datetime | None = None
    year: int | None = None
    unit: str = ""
    number: int = 0
    fallback: datetime | None = None
    now_dependent: bool = False
    delta: timedelta | None = None

    def resolve(self, now: datetime) -> datetime | None:
        """The filter's instant at ``now`` (an aware UTC datetime), or ``None``."""
        delta = self.delta
        if delta is not None:
            try:
                return now - delta
            except OverflowError:
                return None
        if self.unit:
            try:
                shifted = _shift(self.unit, self.number, now)
            except OverflowError:
                return None
            return shifted if shifted is not None else self.fallback
        if self.year is not None:
            local = now.astimezone()
            try:
                return datetime(self.year, local.month, local.day, tzinfo=UTC)
            except ValueError:  # February 29 outside a leap year
                return None
        return self.fixed


_INVALID = DateSpec()
# The units whose offset does not depend on the date: built once per filter, not per match.
_DELTAS = {
    "h": lambda number: timedelta(hours=number),
    "d": lambda number: timedelta(days=number),
    "w": lambda number: timedelta(weeks=number),
}


def _absolute(text: str) -> datetime | None:
    read = _read(text)
    return read if isinstance(read, datetime) else None


def compile_date(value: object) -> DateSpec:
    """Classify a filter value once, so that matching only does arithmetic."""
    text = str(value)
    match = _RELATIVE.search(text)
    if match is not None and int(match["number"]) < 10_000:
        unit = match["unit"]
        fallback = None if unit in "hdw" else _absolute(text)
        number = int(match["number"])
        delta = _DELTAS[unit](number) if unit in _DELTAS else None
        return DateSpec(
            unit=unit, number=number, fallback=fallback, now_dependent=True, delta=delta
        )
    read = _read(text)
    if isinstance(read, int):
        return DateSpec(year=read, now_dependent=True)
    return _INVALID if read is None else DateSpec(fixed=read)


def as_comparable(value: object, target: datetime, now: datetime) -> tuple[object, object]:
    """Pair a property value with the filter instant in comparable form; raise ``ValueError``.

    A ``datetime`` compares as an instant (naive meaning UTC), a ``date`` with the filter's
    date, a string is parsed first. Anything else cannot be compared.
    """
    if type(value) is str:
        return parse_datetime(value, now), target
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)), target
    if isinstance(value, date):
        return value, target.date()
    if isinstance(value, str):
        return parse_datetime(value, now), target
    raise ValueError("not a date")
