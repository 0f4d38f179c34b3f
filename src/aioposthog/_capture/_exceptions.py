"""The properties of an ``$exception`` event, in the shape PostHog error tracking reads.

`exception_properties` walks an exception, its ``__cause__``/``__context__`` chain and
the members of exception groups, as the official SDK (posthog 7.91.1) does, and
returns ``$exception_list`` (outermost exception first, each cause after the exception
it caused, the root cause last) and ``$exception_level``.

Each entry::

    {"type": "ValueError", "value": "bad input", "module": None,
     "mechanism": {"type": "generic", "handled": True, "synthetic": False,
                   "exception_id": 0},
     "stacktrace": {"type": "raw", "frames": [
         {"platform": "python", "filename": "app/views.py", "abs_path": "/srv/app/views.py",
          "function": "get", "module": "app.views", "lineno": 12,
          "pre_context": [...], "context_line": "    raise ValueError(...)",
          "post_context": [...], "in_app": True}]}}

Chained entries carry ``mechanism = {"type": "chained", "source": "cause" | "context" |
"member", "parent_id": <id of the exception they explain>, ...}``.

Deliberate differences from the official SDK, all to keep one event small and valid:
at most `MAX_FRAMES_PER_EXCEPTION` frames per exception (the outermost and innermost
halves are kept) and `MAX_FRAMES_TOTAL` per event; source context stops once
`MAX_CONTEXT_BYTES` have been used; a context line or exception message over its limit
is cut to a string ending in "..." (the official SDK sends ``null`` in its place); text
that is not valid UTF-8 (lone surrogates) is repaired with "?"; ``filename`` is never
``null``; an ``errno`` that is not an int or a str is left out; frames of the
``sentry_sdk`` package are not hidden. Nothing here mutates the exception.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any, Literal

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_EXCEPTIONS",
    "MAX_FRAMES_PER_EXCEPTION",
    "MAX_FRAMES_TOTAL",
    "ExceptionLevel",
    "exception_properties",
]

#: Exceptions listed per event, as in the official SDK.
MAX_EXCEPTIONS = 50
#: Exception-group members looked at per event, as in the official SDK.
MAX_GROUP_MEMBER_INSPECTIONS = 1_000
MAX_FRAMES_PER_EXCEPTION = 100
MAX_FRAMES_TOTAL = 500
#: Source context (pre, current and post lines) per event, in UTF-8 bytes.
MAX_CONTEXT_BYTES = 128 * 1024
#: Lines of source before and after the current one, as in the official SDK.
CONTEXT_LINES = 5
#: Longest context line, in UTF-8 bytes, as in the official SDK.
MAX_LINE_BYTES = 1024
MAX_VALUE_BYTES = 8 * 1024

ExceptionLevel = Literal["fatal", "error", "warning", "log", "info", "debug"]

_PACKAGE = __name__.partition(".")[0]
_EXTERNAL_PATH = re.compile(r"[\\/](?:dist|site)-packages[\\/]")


def exception_properties(
    exc: BaseException,
    *,
    handled: bool = True,
    mechanism_type: str | None = None,
    level: ExceptionLevel = "error",
    source: str | None = None,
    project_root: str | None = None,
    in_app_modules: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``$exception`` event properties for `exc`.

    `handled` is False for exceptions nobody caught; `mechanism_type` defaults to
    ``"generic"`` for handled and ``"onuncaughtexception"`` for unhandled ones. A frame
    is in-app when its module is (or is inside) one of `in_app_modules`, or when its file
    lies under `project_root` (default: the current directory) and not in a
    site-packages or dist-packages directory. `source` becomes ``$exception_source``.

    >>> try:
    ...     {}["missing"]
    ... except KeyError as exc:
    ...     props = exception_properties(exc)
    >>> props["$exception_list"][0]["type"], props["$exception_list"][0]["value"]
    ('KeyError', "'missing'")

    An exception that was never raised gets the caller's stack, marked synthetic.
    """
    walker = _Walker(
        handled=handled,
        mechanism_type=mechanism_type or ("generic" if handled else "onuncaughtexception"),
        project_root=os.getcwd() if project_root is None else project_root,
        in_app_modules=tuple(in_app_modules),
    )
    walker.visit(exc, parent_id=None, relation=None)
    properties: dict[str, Any] = {
        "$exception_list": walker.entries,
        "$exception_level": level,
    }
    if source:
        properties["$exception_source"] = source
    return properties


class _Walker:
    """Depth-first walk of one exception tree, within the event's budgets."""

    def __init__(
        self,
        *,
        handled: bool,
        mechanism_type: str,
        project_root: str,
        in_app_modules: tuple[str, ...],
    ) -> None:
        self.handled = handled
        self.mechanism_type = mechanism_type
        self.project_root = project_root
        self.in_app_modules = in_app_modules
        self.entries: list[dict[str, Any]] = []
        # Keeping the exceptions themselves alive keeps their ids unique.
        self.seen: dict[int, BaseException] = {}
        self.member_inspections = 0
        self.frames_left = MAX_FRAMES_TOTAL
        self.context_bytes_left = MAX_CONTEXT_BYTES

    def visit(self, exc: BaseException, *, parent_id: int | None, relation: str | None) -> None:
        if id(exc) in self.seen or len(self.entries) >= MAX_EXCEPTIONS:
            return
        self.seen[id(exc)] = exc
        exception_id = len(self.entries)
        entry = self.describe(exc, exception_id, parent_id, relation)
        self.entries.append(entry)

        if exc.__suppress_context__:
            cause, why = exc.__cause__, "cause"
        else:
            cause, why = exc.__context__, "context"
        if cause is not None:
            self.visit(cause, parent_id=exception_id, relation=why)

        if isinstance(exc, BaseExceptionGroup):
            for member in exc.exceptions:
                if (
                    len(self.entries) >= MAX_EXCEPTIONS
                    or self.member_inspections >= MAX_GROUP_MEMBER_INSPECTIONS
                ):
                    break
                self.member_inspections += 1
                self.visit(member, parent_id=exception_id, relation="member")

    def describe(
        self,
        exc: BaseException,
        exception_id: int,
        parent_id: int | None,
        relation: str | None,
    ) -> dict[str, Any]:
        cls = type(exc)
        module = getattr(cls, "__module__", None)
        frames, synthetic = self.frames_of(exc, is_root=parent_id is None)

        mechanism: dict[str, Any] = {"exception_id": exception_id}
        if parent_id is None:
            mechanism["type"] = self.mechanism_type
            mechanism["handled"] = self.handled
        else:
            mechanism["type"] = "chained"
            mechanism["source"] = relation
            mechanism["parent_id"] = parent_id
        mechanism["synthetic"] = synthetic
        errno = getattr(exc, "errno", None)
        if isinstance(errno, (int, str)):
            mechanism["meta"] = {"errno": {"number": errno}}
        if isinstance(exc, BaseExceptionGroup):
            mechanism["is_exception_group"] = True

        entry: dict[str, Any] = {
            "type": getattr(cls, "__qualname__", None) or cls.__name__,
            "value": _truncate(_text(_message(exc)), MAX_VALUE_BYTES),
            "module": None if module in (None, "builtins", "__builtins__") else module,
            "mechanism": mechanism,
        }
        if frames:
            entry["stacktrace"] = {"type": "raw", "frames": frames}
        return entry

    def frames_of(self, exc: BaseException, *, is_root: bool) -> tuple[list[dict[str, Any]], bool]:
        """The frames of `exc`, outermost first, and whether they were synthesised."""
        stack: list[tuple[FrameType, int | None]] = []
        tb = exc.__traceback__
        synthetic = False
        if tb is None and is_root:
            stack = _current_stack()
            synthetic = bool(stack)
        while tb is not None:
            stack.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        stack = [item for item in stack if not _hidden(item[0])]

        cap = min(MAX_FRAMES_PER_EXCEPTION, self.frames_left)
        if len(stack) > cap:
            # Keep where it was caught and where it was raised; drop the middle
            # (usually a deep recursion).
            head = cap // 2
            stack = stack[:head] + stack[len(stack) - (cap - head) :]
        self.frames_left -= len(stack)
        return [self.frame(frame, lineno) for frame, lineno in stack], synthetic

    def frame(self, frame: FrameType, lineno: int | None) -> dict[str, Any]:
        code = frame.f_code
        path = code.co_filename
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str):
            module = None
        abs_path = _text(os.path.abspath(path)) if path else None
        out: dict[str, Any] = {
            "platform": "python",
            "filename": _text(_relative_filename(module, path) or path or "<unknown>"),
            "abs_path": abs_path,
            "function": code.co_name or "<unknown>",
            "module": module,
            "lineno": lineno,
        }
        out["pre_context"], out["context_line"], out["post_context"] = self.context(
            path, lineno, frame.f_globals
        )
        in_app = self.in_app(module, abs_path)
        if in_app is not None:
            out["in_app"] = in_app
        return out

    def context(
        self, path: str, lineno: int | None, module_globals: dict[str, Any]
    ) -> tuple[list[str], str | None, list[str]]:
        if not path or lineno is None or lineno < 1 or self.context_bytes_left <= 0:
            return [], None, []
        try:
            lines = linecache.getlines(path, module_globals)
        except Exception:
            return [], None, []
        index = lineno - 1
        if index >= len(lines):
            # The file changed since the code was loaded.
            return [], None, []
        pre = [self.line(text) for text in lines[max(0, index - CONTEXT_LINES) : index]]
        current = self.line(lines[index])
        post = [self.line(text) for text in lines[index + 1 : index + 1 + CONTEXT_LINES]]
        return pre, current, post

    def line(self, text: str) -> str:
        text = _truncate(_text(text.strip("\r\n")), MAX_LINE_BYTES)
        self.context_bytes_left -= len(text)
        return text

    def in_app(self, module: str | None, abs_path: str | None) -> bool | None:
        """True, False, or None when unknown (the server then decides)."""
        if module is not None and any(
            module == prefix or module.startswith(prefix + ".") for prefix in self.in_app_modules
        ):
            return True
        if abs_path is None:
            return None
        if _EXTERNAL_PATH.search(abs_path):
            return False
        if abs_path.startswith(self.project_root):
            return True
        return None


def _current_stack() -> list[tuple[FrameType, int | None]]:
    """The caller's stack, outermost first, without this package's own frames on top."""
    frames: list[tuple[FrameType, int | None]] = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if not (isinstance(name, str) and (name == _PACKAGE or name.startswith(_PACKAGE + "."))):
            break
        frame = frame.f_back
    while frame is not None:
        frames.append((frame, frame.f_lineno))
        frame = frame.f_back
    frames.reverse()
    return frames


def _hidden(frame: FrameType) -> bool:
    # The `__traceback_hide__` convention (pytest, Jinja2, Werkzeug...).
    try:
        local_vars = frame.f_locals
        return bool(local_vars.get("__traceback_hide__") or local_vars.get("__tracebackhide__"))
    except Exception:
        return False


def _relative_filename(module: str | None, path: str) -> str | None:
    """The file's path from its top-level package's parent, e.g. ``app/views.py``."""
    if not path or not module:
        return path or None
    try:
        if path.endswith(".pyc"):
            path = path[:-1]
        top, dot, _ = module.partition(".")
        if not dot:
            return os.path.basename(path)
        top_file = getattr(sys.modules[top], "__file__", None)
        if not top_file:
            return path
        # The directory above the package directory.
        root = top_file.rsplit(os.sep, 2)[0]
        return path.split(root, 1)[-1].lstrip(os.sep)
    except Exception:
        return path


def _message(exc: BaseException) -> str:
    try:
        message: object = getattr(exc, "message", "") or getattr(exc, "detail", "") or exc
    except Exception:
        message = exc
    try:
        return str(message)
    except Exception:
        try:
            return repr(message)
        except Exception:
            return "<broken repr>"


def _text(value: str) -> str:
    """`value`, with lone surrogates (undecodable file names, ...) replaced by "?"."""
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _truncate(value: str, max_bytes: int) -> str:
    if len(value) * 4 <= max_bytes:
        return value
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return value
    return encoded[: max_bytes - 3].decode("utf-8", "ignore") + "..."
