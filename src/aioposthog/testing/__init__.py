"""Testing tools: `LocalPostHog`, a PostHog-compatible server on 127.0.0.1.

>>> from aioposthog.testing import LocalPostHog
>>> with LocalPostHog() as server:
...     server.url.startswith("http://127.0.0.1:")
True
"""

from ._messages import HttpError, Request, Response
from ._records import RequestRecord
from ._router import Route, Router
from ._sample_flags import sample_flag_definitions, sample_person
from ._server import LocalPostHog, V1ResultsHook

__all__ = [
    "HttpError",
    "LocalPostHog",
    "Request",
    "RequestRecord",
    "Response",
    "Route",
    "Router",
    "V1ResultsHook",
    "sample_flag_definitions",
    "sample_person",
]
