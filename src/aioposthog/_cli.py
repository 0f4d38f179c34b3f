"""The ``aioposthog`` command: ``demo`` (the main job) and ``serve`` (a LocalPostHog to use)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

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
        if counter[0] % 10 == 0:
            # A request handler awaits other I/O between captures; yielding here keeps the
            # loop-lag figure about the library's own work, not about a loop that never yields.
            await asyncio.sleep(0)
            if counter[0] % 500 == 0:
                progress.update(counter[0])


class ServerProcess:
    """A LocalPostHog in a child process, like a real PostHog: it shares no GIL with the demo."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> ServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioposthog",
            "serve",
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert self.process.stdout is not None
            line = await asyncio.wait_for(self.process.stdout.readline(), 30)
            match = re.search(r"http://\S+", line.decode())
            if match is None:
                raise RuntimeError(f"LocalPostHog did not start: {line!r}")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self.url = match.group(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def load_flags(self, definitions: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(self.url + "/_local/flag_definitions", json=definitions)
            response.raise_for_status()

    async def stats(self, *, unique: bool = False) -> dict[str, Any]:
        params = {"unique": "1"} if unique else {}
        async with httpx.AsyncClient() as client:
            response = await client.get(self.url + "/_local/stats", params=params)
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result


async def _demo(args: argparse.Namespace) -> int:
    if args.host is None:
        async with ServerProcess() as server:
            print(f"aioposthog {__version__} demo: LocalPostHog listening on {server.url}")
            return await _run_demo(args, server.url, args.api_key or "phc_aioposthog_demo", server)
    api_key = args.api_key or os.environ.get("POSTHOG_API_KEY")
    if not api_key:
        print(
            "--host needs --api-key (or POSTHOG_API_KEY): the project token, phc_...",
            file=sys.stderr,
        )
        return 2
    print(f"aioposthog {__version__} demo: sending to {args.host}")
    return await _run_demo(args, args.host, api_key, None)


async def _run_demo(
    args: argparse.Namespace, host: str, api_key: str, server: ServerProcess | None
) -> int:
    total = args.events
    users = max(1, min(args.users, total))
    workers = 8
    print(
        f"capturing {total:,} events from {users:,} users in {workers} tasks "
        "(overflow=block: backpressure, nothing is dropped)"
    )
    monitor = LoopLagMonitor()
    counter = [0]
    progress = Progress(total, sys.stderr)
    async with AsyncPostHog(api_key, host=host, overflow="block") as posthog:
        lag_task = asyncio.create_task(monitor.run())
        started = time.perf_counter()
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
    received: int | None = None
    unique: int | None = None
    if server is not None:
        counts = await server.stats(unique=True)
        received, unique = counts["events"], counts["unique_uuids"]
    elapsed = finished - started
    capture_time = captured_at - started
    dropped = ", ".join(f"{k}={v}" for k, v in stats.dropped.items() if v)
    rows = [
        ("events captured", f"{stats.captured:,}"),
        ("events sent (acknowledged)", f"{stats.sent:,}"),
        (
            "events received by the server",
            f"{received:,} ({unique:,} distinct uuids)"
            if received is not None and unique is not None
            else "n/a (remote host)",
        ),
        ("dropped", f"{stats.dropped_total:,}" + (f" ({dropped})" if dropped else "")),
        (
            "batches",
            f"{stats.batches_sent:,} (avg {stats.sent / max(1, stats.batches_sent):,.0f} events)",
        ),
        ("retries", f"{stats.retried:,}"),
        ("bytes sent (gzip)", f"{stats.bytes_sent / 1e6:,.1f} MB"),
        (
            "capture time",
            f"{capture_time:.2f} s ({capture_time / max(1, stats.captured) * 1e6:.1f} us per "
            "event, demo workload included, sender live)",
        ),
        ("delivered in", f"{elapsed:.2f} s" + ("" if delivered else " (flush timed out)")),
        ("throughput", f"{stats.sent / max(elapsed, 1e-9):,.0f} events/s end to end"),
        (
            "event-loop lag",
            f"p50 {monitor.percentile(50):.2f} ms, p99 {monitor.percentile(99):.2f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    ok = stats.sent == stats.captured == total and stats.dropped_total == 0
    if server is not None:
        ok = ok and received == unique == stats.sent
    if server is not None:
        ok = await _demo_flags(server, api_key) and ok
    print("OK: every event was delivered exactly once" if ok else "MISMATCH: see the counts above")
    return 0 if ok else 1


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6
    return f"p50 {p50:,.0f} us, p99 {p99:,.0f} us"


async def _demo_flags(server: ServerProcess, api_key: str) -> bool:
    """Twenty realistic flags, evaluated locally (definitions polled) and remotely (/flags)."""
    from .testing import sample_flag_definitions, sample_person

    await server.load_flags(sample_flag_definitions())
    users = 500
    print("feature flags: 20 definitions, 500 users, get_feature_flag + get_all_flags each")
    rows = []
    splits = []
    for mode, personal_key in (("local ", "phs_aioposthog_demo"), ("remote", None)):
        async with AsyncPostHog(api_key, host=server.url, personal_api_key=personal_key) as posthog:
            if personal_key:
                await posthog.load_feature_flags()
            before = (await server.stats())["flags_requests"]
            one: list[float] = []
            every: list[float] = []
            variants: dict[Any, int] = {}
            for i in range(users):
                person = sample_person(i)
                groups = {"company": f"company-{i % 50}"}
                started = time.perf_counter()
                value = await posthog.get_feature_flag(
                    "checkout-experiment", f"user-{i}", person_properties=person
                )
                one.append(time.perf_counter() - started)
                variants[value] = variants.get(value, 0) + 1
                started = time.perf_counter()
                await posthog.get_all_flags(
                    f"user-{i}",
                    person_properties=person,
                    groups=groups,
                    group_properties={"company": {"seats": i % 120}},
                )
                every.append(time.perf_counter() - started)
            calls = (await server.stats())["flags_requests"] - before
        split = ", ".join(f"{k}={v}" for k, v in sorted(variants.items(), key=str))
        splits.append(split)
        rows.append(
            f"  {mode}  get_feature_flag {_percentiles(one)} | get_all_flags "
            f"{_percentiles(every)} | /flags calls: {calls:,} | variants: {split}"
        )
    for row in rows:
        print(row)
    same = splits[0] == splits[1]
    if not same:
        print("MISMATCH: local and remote evaluation disagree")
    return same


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
