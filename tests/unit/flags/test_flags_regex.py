"""The portable-regex translation, against the official SDK's, on random patterns."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioposthog._flags._regex import RegexUnsupported, _Translation, compile_portable, search

posthog_flags = pytest.importorskip("posthog.feature_flags")

TOKENS = [
    "a",
    "b",
    "é",
    ".",
    "(",
    ")",
    "(?:",
    "(?=",
    "(?i)",
    "[",
    "]",
    "[^",
    "^",
    "$",
    "*",
    "+",
    "?",
    "{2}",
    "{1,3}",
    "{2,}",
    "{,2}",
    "{",
    "}",
    "|",
    "\\",
    "\\d",
    "\\w",
    "\\W",
    "\\s",
    "\\S",
    "\\b",
    "\\B",
    "\\x41",
    "\\x4",
    "\\p{L}",
    "\\.",
    "\\$",
    "\\-",
    "\\q",
    "\\1",
    "\\<",
    "-",
    "&&",
    "--",
    "~~",
    "a-z",
    "\\d-9",
    "[\\d-9]",
    "[a-\\w]",
    "[\\s-]",
    "((a+))",
    "(a|b)",
    "a{2}",
    "{3}",
]

VALUES = ["", "a", "aa", "aa\n", "ab", "é", "É1", "\x1c", "a\u0301", "²", " ", "\u2003", "b-a", "$"]

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow],
}


def _official(pattern: str, value: str) -> Any:
    try:
        return posthog_flags._match_regex(pattern, value)
    except posthog_flags.InconclusiveMatchError:
        return "unsupported"


def _ours(pattern: str, value: str) -> Any:
    if pattern == "":
        return True
    try:
        regex = compile_portable(pattern)
        return None if regex is None else search(regex, value)
    except RegexUnsupported:
        return "unsupported"


def _official_translation(pattern: str) -> Any:
    translator = posthog_flags._RegexTranslator(pattern)
    try:
        text = translator.translate()
    except posthog_flags.InconclusiveMatchError:
        return "unsupported"
    return (
        text,
        translator.uses_word_class,
        translator.uses_space_class,
        translator.uses_end_anchor and translator.uses_quantifier_or_alternation,
    )


def _our_translation(pattern: str) -> Any:
    translation = _Translation(pattern)
    try:
        text = translation.run()
    except RegexUnsupported:
        return "unsupported"
    return text, translation.word, translation.space, translation.dollar and translation.repeats


patterns = st.lists(st.sampled_from(TOKENS), max_size=8).map("".join)


@settings(max_examples=1500, **_SETTINGS)
@given(pattern=patterns)
def test_translation_matches_official(pattern: str) -> None:
    assert _our_translation(pattern) == _official_translation(pattern)


@settings(max_examples=400, **_SETTINGS)
@given(pattern=patterns, value=st.one_of(st.sampled_from(VALUES), st.text(max_size=6)))
def test_matching_matches_official(pattern: str, value: str) -> None:
    assert _ours(pattern, value) == _official(pattern, value)


@pytest.mark.parametrize(
    "pattern",
    [
        "a{2}+",
        "a{2}{3}",
        "a{2}?",
        "((a+))+",
        "((a)+b)+",
        "(a+)?",
        r"[\d-9]",
        r"[9-\d]",
        "[a-]",
        "[]a]",
        "[^]a]",
        "()",
        "()+",
        "(?:)*",
        "^*",
        "$+",
        "a**",
        "a*+",
        "a*?",
        r"\x4g",
        "\\",
        "a\\",
        r"[\b]",
        r"[\.]",
        r"[\q]",
        "a{99999999999}",
        "a{4294967296}",
        "a{1,4294967295}",
        "x|{2}",
    ],
)
def test_tricky_translations(pattern: str) -> None:
    assert _our_translation(pattern) == _official_translation(pattern)
    for value in VALUES:
        assert _ours(pattern, value) == _official(pattern, value)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^pro$", "pro", True),
        ("^pro$", "pro\n", False),  # Rust's $ does not match before a final newline
        ("[", "x", None),  # invalid in both engines
        (r"\bfoo", "foo", "unsupported"),
        (r"(a+)+$", "aa", "unsupported"),
        (r"^\w+$", "a\u0301", "unsupported"),
        (r"^\s$", "\x1c", "unsupported"),
        (r"^\x41$", "A", True),
        ("", "anything", True),
    ],
)
def test_regex_examples(pattern: str, value: str, expected: Any) -> None:
    assert _ours(pattern, value) == expected
