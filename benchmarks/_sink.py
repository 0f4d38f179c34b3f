"""The benchmark's sink: a LocalPostHog in its own process, with a few control routes.

    python benchmarks/_sink.py [--port 0] [--drop-events]

Prints ``LocalPostHog listening on http://127.0.0.1:PORT`` once it is listening, then serves
until it is terminated or its standard input closes (so it never outlives the runner).

Routes added to LocalPostHog's own (capture endpoints and ``GET /_local/stats``):

- ``GET /_bench/cpu``: the sink process's CPU seconds and a monotonic clock, so a worker can
  report the sink's CPU share over its measured window (a share near 100% of one core means
  the sink, not the client, set the pace).
- ``POST /_bench/reset?delay=SECONDS``: forget received events and requests (so
  ``flags_requests`` in ``/_local/stats`` counts from zero), forget flag definitions, and set
  the per-request delay (the slow-sink scenario uses 0.05).
- ``GET /_bench/flag_fixture?users=N``: the feature-flag scenarios' fixture, so that a worker
  gets it without importing aioposthog (a worker imports only its own client):
  ``{"definitions": sample_flag_definitions(), "persons": [sample_person(i) for i < N]}``. The
  worker loads the definitions with LocalPostHog's own ``POST /_local/flag_definitions``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType

import _common  # noqa: F401  (puts this checkout's src first on sys.path)

from aioposthog.testing import (
    LocalPostHog,
    Request,
    Response,
    sample_flag_definitions,
    sample_person,
)

_MAX_FIXTURE_USERS = 100_000


def main() -> int:
    """Run the sink until stdin closes or a signal arrives."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--drop-events",
        action="store_true",
        help="count events without keeping them (no `?unique=1` check then)",
    )
    args = parser.parse_args()

    server = LocalPostHog(port=args.port, keep_events=not args.drop_events)

    async def cpu(request: Request) -> Response:
        return Response.json({"cpu": time.process_time(), "wall": time.monotonic()})

    async def reset(request: Request) -> Response:
        delay = float(request.query.get("delay", "0") or 0)
        server.clear()
        server.reset_faults()
        server.set_delay(delay)
        server.clear_flag_definitions()
        server.reset_flag_state()
        return Response.json({"ok": True, "delay": delay})

    async def flag_fixture(request: Request) -> Response:
        users = min(_MAX_FIXTURE_USERS, max(0, int(request.query.get("users", "0") or 0)))
        return Response.json(
            {
                "definitions": sample_flag_definitions(),
                "persons": [sample_person(i) for i in range(users)],
            }
        )

    server.add_route("GET", "/_bench/cpu", cpu, record=False)
    server.add_route("POST", "/_bench/reset", reset, record=False)
    server.add_route("GET", "/_bench/flag_fixture", flag_fixture, record=False)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        # The runner holds our stdin open; EOF means it is gone, however it died. os.read,
        # not sys.stdin: a daemon thread blocked in a buffered read aborts interpreter exit.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    server.start()
    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    print(f"LocalPostHog listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
