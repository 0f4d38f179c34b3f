"""A client inherited by a forked child (gunicorn --preload, multiprocessing with fork) starts
afresh there: it neither resends what the parent queued nor touches the parent's loop."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from aioposthog import AsyncPostHog, ClientState
from aioposthog.testing import LocalPostHog

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that fork() in a multi-threaded process may deadlock; the child here
    # only runs Python code of its own and exits with os._exit.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


async def _child(posthog: AsyncPostHog) -> None:
    assert posthog.state is ClientState.UNOPENED
    assert posthog.stats.captured == 0  # the parent's counts stay in the parent
    await posthog.capture("from child", distinct_id="u2")
    await posthog.aclose(timeout=10)
    assert posthog.stats.sent == 1


async def test_an_open_client_resets_in_a_forked_child() -> None:
    async with LocalPostHog() as server:
        async with AsyncPostHog("phc_fork", host=server.url, flush_interval=60) as posthog:
            await posthog.capture("from parent", distinct_id="u1")  # queued, not yet sent
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: a new loop of its own, then leave without cleanup
                code = 1
                try:
                    asyncio.run(_child(posthog))
                    code = 0
                finally:
                    os._exit(code)
            _, status = await asyncio.to_thread(os.waitpid, pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert posthog.state is ClientState.OPENED  # the parent's client is untouched
            assert posthog.stats.captured == 1
        await server.wait_for_events(2)
        await asyncio.sleep(0.2)  # nothing else arrives
        assert sorted(e["event"] for e in server.events) == ["from child", "from parent"]


async def test_a_closed_client_stays_closed_in_a_child() -> None:
    posthog = AsyncPostHog("phc_fork", host="http://127.0.0.1:9", send=False)
    await posthog.start()
    await posthog.aclose()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if posthog.state is ClientState.CLOSED else 1)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
