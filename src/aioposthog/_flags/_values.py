"""How property and filter values are turned into text, truth values and numbers.

The flags service compares values through their JSON text (``serde_json`` spelling), so the
local engine does the same: ``True`` reads ``"true"``, ``None`` reads ``"null"``, floats use
the shortest round-trip form with Rust's exponent style, objects have sorted keys. A value
that JSON cannot carry (``NaN``, a ``set``, a ``datetime``) cannot be compared locally.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "ASCII_LOWER",
    "NotJSON",
    "ascii_lower",
    "is_boolean_like",
    "parse_number",
    "reads_true",
    "to_text",
]

ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class NotJSON(Exception):
    """The value cannot be spelled as JSON (non-finite float, unknown type, odd keys)."""


def _float_text(value: float) -> str:
    if not math.isfinite(value):
        raise NotJSON
    text = repr(value)
    mantissa, marker, exponent = text.partition("e")
    if not marker:
        return text
    power = int(exponent)
    if -6 < power < 0:
        # Rust prints these small magnitudes positionally, Python with an exponent.
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if power >= 0 else ''}{power}"


def _json_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join([_json_text(item) for item in value]) + "]"
    if isinstance(value, dict):
        if any(not isinstance(name, str) for name in value):
            raise NotJSON
        return (
            "{"
            + ",".join(
                json.dumps(name, ensure_ascii=False) + ":" + _json_text(value[name])
                for name in sorted(value)
            )
            + "}"
        )
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    raise NotJSON


def to_text(value: Any) -> str:
    """A string as itself, anything else as its compact JSON text; raise ``NotJSON``."""
    if isinstance(value, str):
        return value
    return _json_text(value)


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as the flags service does for string operators."""
    # For an ASCII text str.lower is the same and far faster than the translation table.
    return text.lower() if text.isascii() else text.translate(ASCII_LOWER)


def is_boolean_like(value: Any) -> bool:
    """A bool, ``"true"``/``"false"`` in any case, or a list made only of those."""
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.lower() in ("true", "false")
    if isinstance(value, list):
        return all(is_boolean_like(item) for item in value)
    return False


def reads_true(value: Any) -> bool:
    """``True``, ``"true"`` in any case, or a list whose items all read true (``[]`` too)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    if isinstance(value, list):
        return all(reads_true(item) for item in value)
    return False


def parse_number(value: Any) -> float | None:
    """A finite number from a number or a plain decimal string, else ``None``.

    Booleans are not numbers; strings allow an optional sign and exponent but no spaces.
    """
    kind = type(value)
    if kind is int or kind is float:
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if _NUMBER.fullmatch(value) is None:
            return None
    elif not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
