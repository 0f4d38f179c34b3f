"""Regular expressions that behave the same in Python ``re`` and the flags service's Rust.

PostHog evaluates ``regex``/``not_regex`` with Rust's ``regex``/``fancy-regex``. Python's
``re`` agrees on a common core only, so a pattern is translated once when definitions are
compiled and refused (left to the server) when it uses anything outside that core:
look-arounds, inline flags, word boundaries, ``\\p{..}`` classes, set operations in classes,
possessive or nested quantifiers that could backtrack past the service's budget, and so on.
``$`` becomes ``\\Z`` because Rust's ``$`` does not match before a final newline.

Some values are refused at match time too: Rust's ``\\w`` and ``\\s`` differ from Python's on
a few non-ASCII characters and on ``\\x1c``-``\\x1f``; surrogates cannot reach Rust at all;
and a strict end anchor can backtrack heavily on a final newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PortableRegex", "RegexUnsupported", "compile_portable", "search"]


class RegexUnsupported(Exception):
    """The pattern or the value needs the server's regex engine."""


@dataclass(frozen=True, slots=True)
class PortableRegex:
    """A compiled pattern plus what the value checks need to know about it."""

    compiled: re.Pattern[str]
    uses_word_class: bool
    uses_space_class: bool
    end_anchor_risk: bool


_SIMPLE_ESCAPES = frozenset("dDsSwWbfnrt")
_CLASS_ESCAPABLE = frozenset("\\-[]^.$*+?(){}|")
_SHORTHANDS = frozenset("dDsSwW")
_HEX = frozenset("0123456789abcdefABCDEF")
_NO_REPETITION_AFTER = frozenset({"", "|", "(", "^", "$", "()", "quantifier"})
_REPETITION = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")
_CLASS_SET_OPERATORS = ("&&", "--", "~~")
_RUST_EXTRA_SPACES = "\x1c\x1d\x1e\x1f"


class _Translation:
    """One left-to-right pass over a pattern; ``run`` returns the Python spelling."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.out: list[str] = []
        self.class_open = -1  # index of the "[" of the class being read, -1 outside
        self.prev = ""  # kind of the previous token: a character, "()", "quantifier", ...
        self.groups: list[bool] = []  # per open group: whether it holds a quantifier
        self.closed_had_quantifier = False
        self.word = False
        self.space = False
        self.dollar = False
        self.repeats = False

    def run(self) -> str:
        p = self.p
        i = 0
        while i < len(p):
            c = p[i]
            if "\ud800" <= c <= "\udfff":
                raise RegexUnsupported
            if self.class_open < 0:
                self._track_nesting(c)
            if c == "\\":
                i = self._escape(i + 1)
            elif c == "[":
                if self.class_open >= 0:
                    raise RegexUnsupported
                self.class_open = i
                self.out.append(c)
                i += 1
            elif self.class_open >= 0:
                i = self._in_class(i, c)
            else:
                i = self._outside_class(i, c)
        return "".join(self.out)

    def _track_nesting(self, c: str) -> None:
        if c == "$":
            self.dollar = True
        if c in "*+?{|":
            self.repeats = True
        if c == "(":
            self.groups.append(False)
        elif c == ")":
            self.closed_had_quantifier = self.groups.pop() if self.groups else False
            if self.groups and self.closed_had_quantifier:
                self.groups[-1] = True
        elif c in "*+?{":
            # A quantified group that is quantified again can backtrack exponentially.
            if self.prev == ")" and self.closed_had_quantifier:
                raise RegexUnsupported
            if self.groups:
                self.groups[-1] = True

    def _escape(self, i: int) -> int:
        p = self.p
        if i == len(p):
            self.out.append("\\")  # a dangling backslash: invalid in both engines
            return i
        e = p[i]
        if e == "x":
            digits = p[i + 1 : i + 3]
            if len(digits) != 2 or not _HEX.issuperset(digits):
                raise RegexUnsupported
            self.out.append("\\x" + digits)
            self.prev = "literal"
            return i + 3
        inside = self.class_open >= 0
        if not inside and e in "bB<>":
            raise RegexUnsupported
        if e not in _SIMPLE_ESCAPES:
            if not (" " <= e <= "~" and not e.isalnum()):
                raise RegexUnsupported
            if inside and e not in _CLASS_ESCAPABLE:
                raise RegexUnsupported
        self.word = self.word or e in "wW"
        self.space = self.space or e in "sS"
        self.out.append("\\" + e)
        self.prev = "literal"
        return i + 1

    def _in_class(self, i: int, c: str) -> int:
        p = self.p
        if c == "]":
            start = self.class_open + 1
            first = start + 1 if p[start : start + 1] == "^" else start
            if i == first:  # "[]" and "[^]" mean different things in the two engines
                raise RegexUnsupported
            self.class_open = -1
            self.prev = "literal"
            self.out.append(c)
            return i + 1
        if p[i : i + 2] in _CLASS_SET_OPERATORS:
            raise RegexUnsupported
        if c == "-" and i + 1 < len(p) and p[i + 1] != "]":
            after_shorthand = i >= 2 and p[i - 2] == "\\" and p[i - 1] in _SHORTHANDS
            before_shorthand = p[i + 1] == "\\" and p[i + 2 : i + 3] in _SHORTHANDS
            if after_shorthand or before_shorthand:
                raise RegexUnsupported
        self.out.append(c)
        return i + 1

    def _outside_class(self, i: int, c: str) -> int:
        p = self.p
        if c == "(" and p[i + 1 : i + 2] == "?":
            if p[i + 2 : i + 3] != ":":
                raise RegexUnsupported
            self.out.append("(?:")
            self.prev = "("
            return i + 3
        if c == "{":
            match = _REPETITION.match(p, i)
            if match is None or self.prev in _NO_REPETITION_AFTER:
                raise RegexUnsupported
            for bound in match.groups():
                if bound and (len(bound) > 10 or int(bound) > 0xFFFFFFFF):
                    raise RegexUnsupported
            text = match.group()
            self.out.append(text)
            i += len(text)
            if p[i : i + 1] in ("+", "{"):
                raise RegexUnsupported
            self.prev = "quantifier"
            return i
        if c in "*+?":
            if self.prev in ("^", "$", "()") or p[i + 1 : i + 2] in ("+", "{"):
                raise RegexUnsupported
            self.prev = "quantifier"
        elif c == ")" and self.prev in ("(", "()"):
            self.prev = "()"
        else:
            self.prev = c
        self.out.append("\\Z" if c == "$" else c)
        return i + 1


def compile_portable(pattern: str) -> PortableRegex | None:
    """Translate and compile ``pattern``; ``None`` when it is invalid in both engines.

    Raise ``RegexUnsupported`` when only the server can evaluate it.
    """
    translation = _Translation(pattern)
    text = translation.run()
    try:
        compiled = re.compile(text)
    except re.error:
        return None
    except Exception as exc:  # e.g. RecursionError on deeply nested groups
        raise RegexUnsupported from exc
    return PortableRegex(
        compiled,
        translation.word,
        translation.space,
        translation.dollar and translation.repeats,
    )


def search(regex: PortableRegex, value: str) -> bool:
    """Whether ``regex`` finds a match in ``value``; raise ``RegexUnsupported`` when unsure."""
    if regex.end_anchor_risk and value.endswith("\n"):
        raise RegexUnsupported
    if not value.isascii():
        for char in value:
            if "\ud800" <= char <= "\udfff":
                raise RegexUnsupported
        if regex.uses_word_class:
            for char in value:
                if not char.isascii() and not (char.isalpha() or char.isdecimal()):
                    raise RegexUnsupported
    if regex.uses_space_class:
        for char in _RUST_EXTRA_SPACES:
            if char in value:
                raise RegexUnsupported
    try:
        return regex.compiled.search(value) is not None
    except Exception as exc:
        raise RegexUnsupported from exc
