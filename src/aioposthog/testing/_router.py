"""The router: (method, path) -> Route, with or without the trailing slash."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ._messages import Handler, HttpError

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    """A handler bound to a method and a path pattern.

    `group` names the routes that share fault injection and delays ("capture"); `record`
    says whether requests on it are kept in `LocalPostHog.requests`.
    """

    method: str
    pattern: str
    handler: Handler
    group: str | None = None
    record: bool = True


_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def _normalize(path: str) -> str:
    # PostHog answers with and without the trailing slash; match both as one route.
    return path.rstrip("/") or "/"


class Router:
    """(method, path) -> Route. Paths match with or without a trailing slash.

    Patterns may hold `{name}` (one segment) or `{name:path}` (the rest of the path), passed to
    the handler as `request.path_params`.
    """

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Route]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Route]]] = []

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        group: str | None = None,
        record: bool = True,
    ) -> Route:
        """Register `handler` for `method` on `pattern`; a later registration replaces one."""
        route = Route(method.upper(), pattern, handler, group, record)
        key = _normalize(pattern)
        if _PARAM.search(key) is None:
            self._exact.setdefault(key, {})[route.method] = route
            return route
        regex = re.compile(
            "".join(_segment_regex(part) for part in re.split(r"(\{\w+(?::path)?\})", key) if part)
            + "/?"
        )
        for existing, methods in self._patterns:
            if existing.pattern == regex.pattern:
                methods[route.method] = route
                return route
        self._patterns.append((regex, {route.method: route}))
        return route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for this request and its path parameters; HttpError 404 or 405."""
        methods = self._exact.get(_normalize(path))
        params: dict[str, str] = {}
        if methods is None:
            for regex, candidates in self._patterns:
                found = regex.fullmatch(path)
                if found is not None:
                    methods = candidates
                    params = {k: unquote(v) for k, v in found.groupdict().items()}
                    break
        if methods is None:
            raise HttpError(404, f"Not found: {path}", type="invalid_request", code="not_found")
        route = methods.get(method)
        if route is None:
            raise HttpError(
                405,
                f"Method {method} not allowed on {path}",
                type="invalid_request",
                code="method_not_allowed",
                headers={"allow": ", ".join(sorted(methods))},
            )
        return route, params


def _segment_regex(part: str) -> str:
    param = _PARAM.fullmatch(part)
    if param is None:
        return re.escape(part)
    return f"(?P<{param.group(1)}>{'.+' if param.group(2) else '[^/]+'})"
