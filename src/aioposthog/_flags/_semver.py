"""Semantic versions as PostHog's ``sortableSemver`` reads them: ``(major, minor, patch)``.

A leading ``v``/``V`` and surrounding spaces are ignored, so are pre-release and build
suffixes (``1.2.3-beta`` is ``1.2.3``) and parts after the third; missing parts are 0.
Leading zeros (``01``) are invalid, as semver 2.0.0 says.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["Version", "parse_version", "range_bounds", "read_version"]

Version = tuple[int, int, int]


def _number(part: str) -> int:
    if not part or not part.isdigit() or (len(part) > 1 and part[0] == "0"):
        raise ValueError(f"not a semver number: {part!r}")
    return int(part)  # raises ValueError for digits int() rejects, such as superscripts


def parse_version(value: object) -> Version:
    """``(major, minor, patch)`` of ``value``; raise ``ValueError`` if it is no version.

    >>> parse_version(" v1.2-rc.1 ")
    (1, 2, 0)
    """
    core = str(value).strip().lstrip("vV").split("-")[0].split("+")[0]
    parts = core.split(".")
    if not parts[0]:
        raise ValueError("empty version")
    minor = _number(parts[1]) if len(parts) > 1 and parts[1] else 0
    patch = _number(parts[2]) if len(parts) > 2 and parts[2] else 0
    return _number(parts[0]), minor, patch


def range_bounds(operator: str, value: object) -> tuple[Version, Version]:
    """``[lower, upper)`` for ``semver_tilde``, ``semver_caret`` or ``semver_wildcard``.

    ``~1.2.3`` is ``[1.2.3, 1.3.0)``; ``^1.2.3`` is ``[1.2.3, 2.0.0)``, ``^0.2.3`` is
    ``[0.2.3, 0.3.0)``, ``^0.0.3`` is ``[0.0.3, 0.0.4)``; ``1.*`` is ``[1.0.0, 2.0.0)``,
    ``1.2.*`` is ``[1.2.0, 1.3.0)``. Raise ``ValueError`` for an invalid value.
    """
    if operator == "semver_wildcard":
        cleaned = str(value).strip().lstrip("vV").replace("*", "").rstrip(".")
        parts = [part for part in cleaned.split(".") if part]
        if not parts:
            raise ValueError("empty wildcard")
        numbers = [_number(part) for part in parts[:3]]
        if len(numbers) == 1:
            return (numbers[0], 0, 0), (numbers[0] + 1, 0, 0)
        if len(numbers) == 2:
            return (numbers[0], numbers[1], 0), (numbers[0], numbers[1] + 1, 0)
        return (numbers[0], numbers[1], numbers[2]), (numbers[0], numbers[1], numbers[2] + 1)
    major, minor, patch = parse_version(value)
    lower = (major, minor, patch)
    if operator == "semver_tilde":
        return lower, (major, minor + 1, 0)
    if major > 0:
        return lower, (major + 1, 0, 0)
    if minor > 0:
        return lower, (0, minor + 1, 0)
    return lower, (0, 0, patch + 1)


@lru_cache(maxsize=4096)
def read_version(text: str) -> Version | None:
    """``parse_version`` for a string, remembered (apps report few distinct versions)."""
    try:
        return parse_version(text)
    except ValueError:
        return None
