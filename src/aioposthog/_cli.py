"""The ``aioposthog`` command: ``demo`` (the main job) and ``serve`` (a LocalPostHog to use)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ._client import AsyncPostHog
from ._version import __version__

__all__ = ["main"]


@dataclass
class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper: the cost others' work imposes on it."""

    interval: float = 0.005
    samples: list[float] = field(default_factory=list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - expected))

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the lag, in milliseconds."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, int(q / 100 * len(ordered)))
        return ordered[index] * 1000


class Progress:
    """A one-line progress bar on a terminal; a few plain lines otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._last = 0.0
        self._last_decile = -1

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self._last < 0.1 and done < self.total:
                return
            self._last = now
            width = 30
            filled = int(width * done / max(1, self.total))
            rate = done / max(now - self.started, 1e-9)
            self.stream.write(
                f"\r  capturing [{'#' * filled}{'.' * (width - filled)}] "
                f"{done:,}/{self.total:,} events  {rate:,.0f}/s "
            )
            self.stream.flush()
        else:
            decile = done * 10 // max(1, self.total)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(f"  captured {done:,}/{self.total:,} events\n")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


_PAGES = ["/", "/pricing", "/docs", "/blog", "/signup", "/checkout", "/account"]
_PLANS = ["free", "starter", "pro", "enterprise"]


async def _produce(
    posthog: AsyncPostHog,
    worker: int,
    workers: int,
    total: int,
    users: int,
    counter: list[int],
    progress: Progress,
) -> None:
    rng = random.Random(worker)
    for i in range(worker, total, workers):
        user = f"user-{i % users}"
        company = f"company-{i % users % 50}"
        if i < users:
            await posthog.set(
                user,
                {"email": f"{user}@example.com", "plan": rng.choice(_PLANS), "signup_index": i},
            )
        elif i % 997 == 0:
            await posthog.group_identify(
                "company", company, {"name": company.title(), "seats": i % 400}
            )
        elif i == total // 2:
            try:
                raise ValueError("demo: payment provider answered 502")
            except ValueError as exc:
                await posthog.capture_exception(exc, user, {"checkout_step": "payment"})
        else:
            await posthog.capture(
                "page viewed" if i % 5 else "order completed",
                distinct_id=user,
                properties={
                    "$current_url": "https://shop.example.com" + _PAGES[i % len(_PAGES)],
                    "amount": round(rng.uniform(5, 500), 2),
                    "items": i % 7 + 1,
                    "coupon": None if i % 3 else "WELCOME10",
                    "ab_bucket": i % 2,
                },
                groups={"company": company},
            )
        counter[0] += 1
        if counter[0] % 500 == 0:
            progress.update(counter[0])


async def _demo(args: argparse.Namespace) -> int:
    out = sys.stdout
    server: Any = None
    if args.host is None:
        try:
            from .testing import LocalPostHog
        except (
            ImportError
        ) as exc:  # pragma: no cover - the server needs only the standard library and h11
            print(f"aioposthog demo needs the local server: {exc}", file=sys.stderr)
            return 2
        server = LocalPostHog()
        server.start()  # returns once the socket listens; the server runs in its own thread
        host = server.url
        api_key = args.api_key or "phc_aioposthog_demo"
        print(f"aioposthog {__version__} demo: LocalPostHog listening on {host}", file=out)
    else:
        host = args.host
        api_key = args.api_key or os.environ.get("POSTHOG_API_KEY")
        if not api_key:
            print(
                "--host needs --api-key (or POSTHOG_API_KEY): the project token, phc_...",
                file=sys.stderr,
            )
            return 2
        print(f"aioposthog {__version__} demo: sending to {host}", file=out)
    total = args.events
    users = max(1, min(args.users, total))
    print(
        f"capturing {total:,} events from {users:,} users (overflow=block: nothing is dropped)",
        file=out,
    )
    monitor = LoopLagMonitor()
    counter = [0]
    progress = Progress(total, sys.stderr)
    try:
        async with AsyncPostHog(api_key, host=host, overflow="block") as posthog:
            lag_task = asyncio.create_task(monitor.run())
            started = time.perf_counter()
            workers = 8
            async with asyncio.TaskGroup() as group:
                for worker in range(workers):
                    group.create_task(
                        _produce(posthog, worker, workers, total, users, counter, progress)
                    )
            captured_at = time.perf_counter()
            progress.update(counter[0])
            progress.close()
            delivered = await posthog.flush(timeout=120)
            finished = time.perf_counter()
            lag_task.cancel()
            stats = posthog.stats
        received = None
        if server is not None:
            await server.wait_for_events(stats.sent, timeout=10.0)
            received = len(server.events)
    finally:
        if server is not None:
            server.stop()
    elapsed = finished - started
    rows = [
        ("events captured", f"{stats.captured:,}"),
        ("events sent (acknowledged)", f"{stats.sent:,}"),
        (
            "events received by the server",
            f"{received:,}" if received is not None else "n/a (remote host)",
        ),
        (
            "dropped",
            f"{stats.dropped_total:,}"
            + (
                f" {dict((k, v) for k, v in stats.dropped.items() if v)}"
                if stats.dropped_total
                else ""
            ),
        ),
        (
            "batches",
            f"{stats.batches_sent:,} (avg {stats.sent / max(1, stats.batches_sent):,.0f} events)",
        ),
        ("retries", f"{stats.retried:,}"),
        ("bytes sent (gzip)", f"{stats.bytes_sent / 1e6:,.1f} MB"),
        ("capture time", f"{captured_at - started:.2f} s"),
        ("delivered in", f"{elapsed:.2f} s" + ("" if delivered else " (flush timed out)")),
        ("throughput", f"{stats.sent / max(elapsed, 1e-9):,.0f} events/s end to end"),
        (
            "event-loop lag",
            f"p50 {monitor.percentile(50):.2f} ms, p99 {monitor.percentile(99):.2f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=out)
    ok = (
        stats.sent == stats.captured
        and stats.dropped_total == 0
        and (received in (None, stats.sent))
    )
    print(
        "OK: every event was delivered exactly once" if ok else "MISMATCH: see the counts above",
        file=out,
    )
    return 0 if ok else 1


async def _serve(args: argparse.Namespace) -> int:
    from .testing import LocalPostHog

    async with LocalPostHog(port=args.port) as server:
        print(f"LocalPostHog listening on {server.url} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C cancels the run
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioposthog", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aioposthog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="capture a realistic stream into a local PostHog and report"
    )
    demo.add_argument(
        "--events", type=int, default=100_000, help="events to capture (default 100,000)"
    )
    demo.add_argument("--users", type=int, default=1_000, help="distinct users (default 1,000)")
    demo.add_argument(
        "--host", default=None, help="a real PostHog host instead of the local server"
    )
    demo.add_argument("--api-key", default=None, help="project token (phc_...) for --host")
    serve = commands.add_parser("serve", help="run a LocalPostHog server until interrupted")
    serve.add_argument("--port", type=int, default=8010)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioposthog`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo" and args.events < 1:
        print("--events must be at least 1", file=sys.stderr)
        return 2
    runner = _demo if args.command == "demo" else _serve
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
