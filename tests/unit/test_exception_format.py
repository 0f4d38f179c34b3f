"""`$exception` properties against the official SDK's output for the same exceptions.

The official client builds `$exception_list` with
`exceptions_from_error_tuple(exc_info_from_error(exc))` and then marks frames in-app with
`handle_in_app(..., project_root=os.getcwd())` (its default project root); `official_list`
reproduces that.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

import posthog.exception_utils
import pytest

from aioposthog._capture._exceptions import (
    CONTEXT_LINES,
    MAX_EXCEPTIONS,
    MAX_FRAMES_PER_EXCEPTION,
    MAX_LINE_BYTES,
    MAX_VALUE_BYTES,
    exception_properties,
)
from aioposthog._serialize import encode_event

_exc_info_from_error = cast(Callable[[Any], Any], posthog.exception_utils.exc_info_from_error)
_exceptions_from_error_tuple = cast(
    Callable[[Any], list[dict[str, Any]]], posthog.exception_utils.exceptions_from_error_tuple
)
_handle_in_app = cast(Callable[..., dict[str, Any]], posthog.exception_utils.handle_in_app)


def official_list(exc: BaseException) -> list[dict[str, Any]]:
    values = _exceptions_from_error_tuple(_exc_info_from_error(exc))
    event = _handle_in_app({"exception": {"values": values}}, project_root=os.getcwd())
    return cast(list[dict[str, Any]], event["exception"]["values"])


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def caught(raiser: Callable[[], object]) -> BaseException:
    try:
        raiser()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


# -- exceptions to compare -----------------------------------------------------------------


class PaymentError(Exception):
    pass


class DetailedError(Exception):
    def __init__(self) -> None:
        super().__init__("ignored")
        self.detail = "the detail wins"


def _inner() -> NoReturn:
    raise KeyError("boom")


def _outer() -> None:
    try:
        _inner()
    except KeyError as exc:
        raise PaymentError("card declined") from exc


def _implicit_context() -> None:
    try:
        _outer()
    except PaymentError:
        raise RuntimeError("during")  # noqa: B904 - the implicit __context__ is the point


def _suppressed() -> None:
    try:
        _inner()
    except KeyError:
        raise ValueError("clean slate") from None


def _group() -> None:
    raise ExceptionGroup(
        "several",
        [cast(Exception, caught(_outer)), OSError(errno.ENOENT, "no such file"), TypeError("t")],
    )


def _nested_group() -> None:
    try:
        _group()
    except ExceptionGroup as inner:
        raise BaseExceptionGroup("outer", [inner, KeyboardInterrupt()]) from None


def _os_error() -> None:
    open("/definitely/not/here")  # noqa: SIM115


def _json_error() -> None:
    json.loads("{not json")


def _detailed() -> None:
    raise DetailedError()


def _recurse(n: int) -> int:
    return _recurse(n + 1) + 1


CASES: list[Callable[[], object]] = [
    _inner,
    _outer,
    _implicit_context,
    _suppressed,
    _group,
    _nested_group,
    _os_error,
    _json_error,
    _detailed,
]


@pytest.mark.parametrize("raiser", CASES, ids=lambda f: f.__name__)
def test_matches_the_official_sdk(raiser: Callable[[], object]) -> None:
    exc = caught(raiser)
    props = exception_properties(exc)
    assert set(props) == {"$exception_list", "$exception_level"}
    assert props["$exception_level"] == "error"
    assert as_json(props["$exception_list"]) == as_json(official_list(exc))


def test_chain_order_and_linkage() -> None:
    exc = caught(_implicit_context)
    entries = exception_properties(exc)["$exception_list"]
    assert [(e["type"], e["value"]) for e in entries] == [
        ("RuntimeError", "during"),
        ("PaymentError", "card declined"),
        ("KeyError", "'boom'"),
    ]
    assert entries[0]["mechanism"] == {
        "exception_id": 0,
        "type": "generic",
        "handled": True,
        "synthetic": False,
    }
    assert entries[1]["mechanism"] == {
        "exception_id": 1,
        "type": "chained",
        "source": "context",
        "parent_id": 0,
        "synthetic": False,
    }
    assert entries[2]["mechanism"]["source"] == "cause"
    assert entries[2]["mechanism"]["parent_id"] == 1
    assert entries[1]["module"] == __name__
    assert entries[0]["module"] is None

    frames = entries[2]["stacktrace"]["frames"]
    assert entries[2]["stacktrace"]["type"] == "raw"
    assert [f["function"] for f in frames] == ["_outer", "_inner"]
    last = frames[-1]
    assert last["lineno"] == _inner.__code__.co_firstlineno + 1
    assert last["context_line"] == '    raise KeyError("boom")'
    assert last["abs_path"] == os.path.abspath(__file__)
    assert last["filename"] == "tests/unit/test_exception_format.py"
    assert last["module"] == __name__
    assert last["platform"] == "python"
    assert last["in_app"] is True
    assert len(last["pre_context"]) == CONTEXT_LINES
    assert len(last["post_context"]) == CONTEXT_LINES


def test_groups_members_and_errno() -> None:
    entries = exception_properties(caught(_group))["$exception_list"]
    assert entries[0]["mechanism"]["is_exception_group"] is True
    members = [e for e in entries if e["mechanism"].get("source") == "member"]
    assert [m["type"] for m in members] == ["PaymentError", "FileNotFoundError", "TypeError"]
    assert {m["mechanism"]["parent_id"] for m in members} == {0}
    os_error = members[1]
    assert os_error["mechanism"]["meta"] == {"errno": {"number": errno.ENOENT}}
    assert "stacktrace" not in os_error  # never raised on its own


def test_unhandled_level_and_source() -> None:
    props = exception_properties(
        caught(_inner), handled=False, level="fatal", source="python.sys_excepthook"
    )
    assert props["$exception_level"] == "fatal"
    assert props["$exception_source"] == "python.sys_excepthook"
    assert props["$exception_list"][0]["mechanism"] == {
        "exception_id": 0,
        "type": "onuncaughtexception",
        "handled": False,
        "synthetic": False,
    }
    custom = exception_properties(caught(_inner), mechanism_type="asyncio")
    assert custom["$exception_list"][0]["mechanism"]["type"] == "asyncio"


def test_never_raised_exception_gets_the_callers_stack() -> None:
    exc = ValueError("not raised")
    entry = exception_properties(exc)["$exception_list"][0]
    assert exc.__traceback__ is None  # not mutated
    assert entry["mechanism"]["synthetic"] is True
    frames = entry["stacktrace"]["frames"]
    assert frames[-1]["function"] == "test_never_raised_exception_gets_the_callers_stack"
    assert frames[-1]["module"] == __name__
    assert all(not f["module"].startswith("aioposthog") for f in frames if f["module"])

    # The official SDK's innermost frame is our helper that called it.
    official = official_list(ValueError("not raised"))[0]
    assert official["mechanism"]["synthetic"] is True
    official_functions = [f["function"] for f in official["stacktrace"]["frames"]]
    assert official_functions == [*(f["function"] for f in frames), "official_list"]


def test_cycles_in_the_chain_terminate() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__ = second
    second.__context__ = first
    entries = exception_properties(first)["$exception_list"]
    assert [e["value"] for e in entries] == ["a", "b"]


def test_long_chains_are_capped() -> None:
    exc: BaseException = ValueError("0")
    for i in range(1, 80):
        new = ValueError(str(i))
        new.__context__ = exc
        exc = new
    entries = exception_properties(exc)["$exception_list"]
    assert len(entries) == MAX_EXCEPTIONS == len(official_list(exc))


def test_deep_recursion_keeps_both_ends_of_the_stack() -> None:
    exc = caught(lambda: _recurse(0))
    assert isinstance(exc, RecursionError)
    frames = exception_properties(exc)["$exception_list"][0]["stacktrace"]["frames"]
    official = official_list(exc)[0]["stacktrace"]["frames"]
    assert len(official) > MAX_FRAMES_PER_EXCEPTION == len(frames)
    half = MAX_FRAMES_PER_EXCEPTION // 2
    assert as_json(frames[:half]) == as_json(official[:half])
    assert as_json(frames[half:]) == as_json(official[-half:])


def test_hidden_frames_are_left_out() -> None:
    def helper() -> None:
        __traceback_hide__ = True
        _inner()

    frames = exception_properties(caught(helper))["$exception_list"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["caught", "_inner"]


@pytest.fixture
def long_line_module(tmp_path: Path) -> Iterator[Any]:
    source = "def fail():\n    raise ValueError('" + "é" * 5000 + "')\n"
    path = tmp_path / "long_line_mod.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("long_line_mod", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["long_line_mod"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["long_line_mod"]


def test_long_lines_and_messages_are_cut(long_line_module: Any) -> None:
    exc = caught(long_line_module.fail)
    entry = exception_properties(exc, project_root=str(Path(long_line_module.__file__).parent))[
        "$exception_list"
    ][0]
    assert len(entry["value"].encode()) <= MAX_VALUE_BYTES
    assert entry["value"].endswith("...")
    frame = entry["stacktrace"]["frames"][-1]
    assert frame["function"] == "fail"
    assert frame["filename"] == "long_line_mod.py"
    assert frame["in_app"] is True
    assert len(frame["context_line"].encode()) <= MAX_LINE_BYTES
    assert frame["context_line"].startswith("    raise ValueError('éé")
    assert frame["context_line"].endswith("...")
    # The official SDK sends null for a line it cuts; cymbal wants strings.
    official = official_list(exc)[0]["stacktrace"]["frames"][-1]
    assert official["function"] == frame["function"]
    assert official["lineno"] == frame["lineno"]


def test_in_app_rules() -> None:
    exc = caught(_json_error)
    frames = exception_properties(exc)["$exception_list"][0]["stacktrace"]["frames"]
    by_module = {f["module"]: f for f in frames}
    assert by_module[__name__]["in_app"] is True
    assert "in_app" not in by_module["json.decoder"]  # stdlib outside the project root

    frames = exception_properties(exc, in_app_modules=["json"], project_root="/nowhere")[
        "$exception_list"
    ][0]["stacktrace"]["frames"]
    by_module = {f["module"]: f for f in frames}
    assert by_module["json.decoder"]["in_app"] is True
    assert "in_app" not in by_module[__name__]

    import pydantic

    site_exc = caught(lambda: pydantic.TypeAdapter(int).validate_python("x"))
    site_frames = exception_properties(site_exc, project_root="/")["$exception_list"][0][
        "stacktrace"
    ]["frames"]
    assert any(f["module"].startswith("pydantic") and f["in_app"] is False for f in site_frames)


def test_broken_str_and_surrogates() -> None:
    class BrokenStr(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    entry = exception_properties(caught(lambda: _raise(BrokenStr())))["$exception_list"][0]
    assert entry["value"].startswith("BrokenStr(")

    entry = exception_properties(ValueError("bad \ud800 text"))["$exception_list"][0]
    assert entry["value"] == "bad ? text"


def _raise(exc: BaseException) -> NoReturn:
    raise exc


@pytest.mark.parametrize("raiser", [*CASES, lambda: _recurse(0)])
def test_properties_encode_as_json(raiser: Callable[[], object]) -> None:
    props = exception_properties(caught(raiser))
    encoded = encode_event({"event": "$exception", "properties": props})
    assert json.loads(encoded)["properties"] == as_json(props)
    assert len(encoded) < 900 * 1024
