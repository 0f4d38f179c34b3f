"""A pytest plugin for applications that use aioposthog: a `LocalPostHog` per test.

Installed with aioposthog (the ``pytest11`` entry point ``aioposthog``), so in your tests:

.. code-block:: python

    async def test_signup_is_tracked(local_posthog):
        async with AsyncPostHog("phc_test", host=local_posthog.url) as posthog:
            await signup(posthog, "u1")
        await local_posthog.wait_for_events(1)
        assert local_posthog.events[0]["event"] == "signed up"

Fixtures:

- ``local_posthog``: a started `LocalPostHog` on 127.0.0.1 (a free port), stopped after the
  test. Sync or async tests alike: the server runs in its own thread with its own loop.
- ``local_posthog_url``: its URL, for code that reads the host from configuration.

Markers: ``@pytest.mark.local_posthog(api_key=..., personal_api_key=..., max_body_size=...)``
passes those keyword arguments to the test's server.

Turn the plugin off with ``-p no:aioposthog``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._server import LocalPostHog

__all__ = ["local_posthog", "local_posthog_url"]

_OPTIONS = frozenset({"api_key", "personal_api_key", "max_body_size", "keep_events"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "local_posthog(**options): options for the test's LocalPostHog "
        "(api_key, personal_api_key, max_body_size, keep_events)",
    )


@pytest.fixture
def local_posthog(request: pytest.FixtureRequest) -> Iterator[LocalPostHog]:
    """A `LocalPostHog` for this test, listening on 127.0.0.1."""
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("local_posthog")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.local_posthog takes keyword arguments only")
        unknown = set(marker.kwargs) - _OPTIONS
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.local_posthog: unknown option(s) {sorted(unknown)}; "
                f"use {sorted(_OPTIONS)}"
            )
        options.update(marker.kwargs)
    with LocalPostHog(**options) as server:
        yield server


@pytest.fixture
def local_posthog_url(local_posthog: LocalPostHog) -> str:
    """The URL of this test's `LocalPostHog` (``http://127.0.0.1:<port>``)."""
    return local_posthog.url
