"""One measured run of one client in one scenario, in a fresh process; prints one JSON line.

    python benchmarks/_worker.py --client aioposthog --scenario throughput_100k_gzip \\
        [--url http://127.0.0.1:PORT] [--quick] [--set events=20000 ...]

Without ``--url`` it starts its own sink (handy under a profiler:
``pyinstrument benchmarks/_worker.py --client aioposthog --scenario capture_live``).

Workloads:

- ``capture``: per-call cost of N captures (after a warm-up), sending on or off.
- ``deliver``: N events (or as many as fit in ``duration`` seconds) from the first capture
  until the sink has them all: events/s, lost, peak RSS, and optionally event-loop lag.
- ``ceiling``: a raw sender posting one pre-built batch as fast as the sink accepts it.
- ``flags``: feature-flag calls per second (``get_feature_flag`` or ``get_all_flags``), local
  evaluation over loaded definitions or remote ``/flags`` calls, over many users.

Every result carries the sink's CPU share, this process's CPU share and the CPU used by other
processes on the machine over the measured window, so a noisy run can be told apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip as gzip_module
import hashlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from _common import API_KEY, EVENT_NAME, USERS, child_env, properties, sink_get, sink_post

if TYPE_CHECKING:
    from _clients import FlagCall, FlagUser

# -- guard: loopback only ---------------------------------------------------------------------

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
BLOCKED: list[str] = []
"""Non-loopback connection or lookup attempts (refused); reported with every result."""


def install_loopback_guard() -> None:
    """Refuse any connection or DNS lookup that is not for loopback, and record it.

    Installed before a client is imported, so no client can phone home (feature flags,
    remote config, telemetry) and skew the comparison or leak anything off this machine.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            BLOCKED.append(f"connect {address[0]}")
            raise ConnectionRefusedError(f"benchmark: non-loopback connect to {address[0]}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return original_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK:
            BLOCKED.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"benchmark: non-loopback lookup {name}")
        return original_getaddrinfo(host, *args, **kwargs)

    # setattr: mypy rightly refuses assignment to a method; this is deliberate patching.
    setattr(socket.socket, "connect", connect)  # noqa: B010
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
    setattr(socket, "getaddrinfo", getaddrinfo)  # noqa: B010


# -- measuring ----------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float:
    """CPU seconds spent by every process on the machine (all cores), from /proc/stat."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle


@dataclass(slots=True)
class Window:
    """Wall time, this process's CPU, the sink's CPU and everyone else's, over a measurement."""

    url: str | None
    wall: float = 0.0
    own_cpu: float = 0.0
    busy: float = 0.0
    sink_cpu: float | None = None

    async def open(self) -> None:
        self.sink_cpu = await _sink_cpu(self.url)
        self.busy = _busy_cpu_seconds()
        self.own_cpu = time.process_time()
        self.wall = time.perf_counter()

    async def close(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own_cpu
        busy = _busy_cpu_seconds() - self.busy
        sink_now = await _sink_cpu(self.url)
        sink = None if sink_now is None or self.sink_cpu is None else sink_now - self.sink_cpu
        others = busy - own - (sink or 0.0)
        return {
            "window_s": wall,
            "worker_cpu_share": own / wall if wall > 0 else None,
            "sink_cpu_share": sink / wall if sink is not None and wall > 0 else None,
            # In cores: 1.0 means another process kept one of the 2 cores busy throughout.
            "other_cpu_cores": max(0.0, others) / wall if wall > 0 else None,
        }


async def _sink_cpu(url: str | None) -> float | None:
    if url is None:
        return None
    try:
        answer = await asyncio.to_thread(sink_get, url, "/_bench/cpu", 10.0)
    except OSError:
        return None
    return float(answer["cpu"])


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB: ``VmHWM`` of /proc/self/status.

    Not ``getrusage().ru_maxrss``: Linux carries that over from the parent across
    fork + exec, so a worker started by a runner that had grown to 115 MB reported a
    115 MB peak of its own. ``VmHWM`` belongs to this process's address space alone.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    return psutil.Process().memory_info().rss / 1024 / 1024


@dataclass(slots=True)
class LagMonitor:
    """How late a task sleeping ``interval`` seconds at a time wakes up: the loop's lag.

    Each sample is also charged to this process or to the machine: on a busy machine part of
    a late wake-up is time the OS gave the CPU to other processes, which no client can help.
    ``own`` is the lag capped by the CPU time this process used during the sleep beyond the
    sleep itself (all its threads: the threaded client's GIL holders count), so it excludes
    time the whole process was descheduled. It is an estimate, reported next to the lag.
    """

    interval: float = 0.005
    samples: list[float] = field(default_factory=list)
    own: list[float] = field(default_factory=list)

    async def run(self) -> None:
        perf, cpu = time.perf_counter, time.process_time
        while True:
            expected = perf() + self.interval
            cpu_before = cpu()
            await asyncio.sleep(self.interval)
            lag = max(0.0, perf() - expected)
            self.samples.append(lag)
            self.own.append(max(0.0, min(lag, cpu() - cpu_before - self.interval)))

    @staticmethod
    def _pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "lag_p50_ms": self._pct(self.samples, 50),
            "lag_p99_ms": self._pct(self.samples, 99),
            "lag_max_ms": max(self.samples) * 1000 if self.samples else None,
            "lag_own_p99_ms": self._pct(self.own, 99),
            "lag_samples": len(self.samples),
        }


async def _sink_events(url: str) -> int:
    answer = await asyncio.to_thread(sink_get, url, "/_local/stats", 10.0)
    return int(answer["events"])


async def wait_for_sink(
    url: str, baseline: int, expected: int, deadline: float, settle: float = 2.0
) -> tuple[int, float, bool]:
    """Poll the sink until it holds ``expected`` more events than ``baseline``, stops
    changing, or ``deadline`` passes.

    Returns (received, when the count last changed, whether it reached ``expected``). The
    clients' flush() returns once their batches are acknowledged, so the first poll normally
    finds everything; polling only matters when a flush gave up early.
    """
    received = await _sink_events(url) - baseline
    changed_at = time.perf_counter()
    while received < expected:
        now = time.perf_counter()
        if now >= deadline or now - changed_at >= settle:
            return received, changed_at, False
        await asyncio.sleep(0.02)
        count = await _sink_events(url) - baseline
        if count != received:
            received, changed_at = count, time.perf_counter()
    return received, changed_at, True


# -- workloads ----------------------------------------------------------------------------------


async def workload_capture(client_name: str, url: str | None, p: dict[str, Any]) -> dict[str, Any]:
    """Per-call cost: wall time of N captures / N, after ``warmup`` untimed ones."""
    from _clients import ClientOptions, make_client

    n, warmup, send = int(p["events"]), int(p.get("warmup", 0)), bool(p["send"])
    if send and url is None:
        raise ValueError("capture with send=True needs a sink")
    client = make_client(
        client_name,
        ClientOptions(
            url=url or "http://127.0.0.1:9",
            events=n + warmup,
            send=send,
            overrides=p.get("config") or {},
        ),
    )
    await client.start()
    yield_every = int(p.get("yield_every", 0))
    await client.produce(0, warmup, yield_every)
    window = Window(url if send else None)
    await window.open()
    produced = await client.produce(warmup, warmup + n, yield_every)
    elapsed = time.perf_counter() - window.wall
    measured = await window.close()
    return {
        "config": client.config,
        "events": n,
        "refused": produced.refused,
        "elapsed_s": elapsed,
        "us_per_call": elapsed / n * 1e6,
        "call_us": produced.call_seconds / n * 1e6,
        "peak_rss_mb": peak_rss_mb(),
        "client_stats": client.stats(),
        **measured,
    }


async def workload_deliver(client_name: str, url: str | None, p: dict[str, Any]) -> dict[str, Any]:
    """End to end: capture N events, flush, and wait until the sink has them."""
    from _clients import ClientOptions, make_client

    if url is None:
        raise ValueError("deliver needs a sink")
    n = int(p["events"])
    client = make_client(
        client_name,
        ClientOptions(
            url=url,
            events=n,
            send=True,
            gzip=bool(p["gzip"]),
            queue=p["queue"],
            overrides=p.get("config") or {},
        ),
    )
    await client.start()
    base_rss = rss_mb()
    drain_timeout = float(p["drain_timeout"])
    if client_name != "aioposthog" and "peer_drain_timeout" in p:
        drain_timeout = float(p["peer_drain_timeout"])
    monitor = LagMonitor() if p.get("lag") else None
    lag_task = asyncio.create_task(monitor.run()) if monitor else None
    await asyncio.sleep(0.05)  # the monitor's first sleep is under way before the clock starts

    baseline = await _sink_events(url)  # the runner resets the sink; a manual run may not
    window = Window(url)
    await window.open()
    started = window.wall
    duration = p.get("duration")
    deadline = started + float(duration) if duration else None
    produced = await client.produce(0, n, int(p.get("yield_every", 10)), deadline)
    captured_at = time.perf_counter()
    accepted = produced.attempted - produced.refused
    capture_rss = rss_mb()

    drain_deadline = captured_at + drain_timeout
    try:
        async with asyncio.timeout(drain_timeout + 5):
            await client.flush(max(0.1, drain_deadline - time.perf_counter()))
    except TimeoutError:
        pass
    received, delivered_at, complete = await wait_for_sink(url, baseline, accepted, drain_deadline)
    if lag_task is not None:
        lag_task.cancel()
    measured = await window.close()
    elapsed = delivered_at - started

    result: dict[str, Any] = {
        "config": client.config,
        "events": produced.attempted,
        "refused": produced.refused,
        "accepted": accepted,
        "received": received,
        "drain_complete": complete,
        "capture_s": captured_at - started,
        "elapsed_s": elapsed,
        "events_per_s": received / elapsed if elapsed > 0 else None,
        "capture_us_per_event": (captured_at - started) / max(1, produced.attempted) * 1e6,
        "base_rss_mb": base_rss,
        "capture_end_rss_mb": capture_rss,
        "peak_rss_mb": peak_rss_mb(),
        "client_stats": client.stats(),
        **measured,
    }
    if complete:
        result["lost"] = produced.attempted - received
        result["pending"] = 0
    else:
        # Delivery was cut by the drain deadline: what the client refused is lost for sure;
        # what it accepted and had not delivered yet is pending (it might still arrive).
        result["lost"] = produced.refused
        result["pending"] = accepted - received
    result["lost_pct"] = 100 * result["lost"] / max(1, produced.attempted)
    if p.get("verify_unique") and complete:
        stats = await asyncio.to_thread(sink_get, url, "/_local/stats?unique=1", 120.0)
        result["unique"] = stats.get("unique_uuids")
        if result["unique"] is not None:
            # A duplicate delivery would inflate `received`; count losses by distinct uuid.
            result["lost"] = produced.attempted - int(result["unique"])
            result["lost_pct"] = 100 * result["lost"] / max(1, produced.attempted)
    if monitor is not None:
        result.update(monitor.summary())
    return result


def _raw_batch(size: int, gzip: bool) -> bytes:
    """One v0 batch body of ``size`` events shaped like the clients' (10 properties + system)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    system = {
        "$lib": "raw",
        "$lib_version": "0",
        "$python_runtime": "CPython",
        "$python_version": "3.11.7",
        "$os": "Linux",
        "$os_version": "12",
        "$geoip_disable": True,
        "$is_server": True,
    }
    batch = [
        {
            "event": EVENT_NAME,
            "distinct_id": USERS[i % 1000],
            "properties": {**properties(i), **system},
            "timestamp": now,
            "uuid": str(uuid.uuid4()),
        }
        for i in range(size)
    ]
    body = json.dumps({"api_key": API_KEY, "batch": batch, "sent_at": now}).encode()
    return gzip_module.compress(body, 1) if gzip else body


async def workload_ceiling(client_name: str, url: str | None, p: dict[str, Any]) -> dict[str, Any]:
    """The sink's own ceiling: pre-built batches posted over keep-alive connections."""
    import httpx

    if url is None:
        raise ValueError("ceiling needs a sink")
    size, gzip, connections = int(p["batch"]), bool(p["gzip"]), int(p["connections"])
    body = _raw_batch(size, gzip)
    headers = {"Content-Type": "application/json"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, trust_env=False) as http:
        await http.post("/batch/", content=body, headers=headers)  # open a connection first
        before = await _sink_events(url)
        window = Window(url)
        await window.open()
        deadline = window.wall + float(p["duration"])
        failures = 0

        async def sender() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                response = await http.post("/batch/", content=body, headers=headers)
                failures += response.status_code != 200

        await asyncio.gather(*(sender() for _ in range(connections)))
        elapsed = time.perf_counter() - window.wall
        measured = await window.close()
    received = await _sink_events(url) - before
    return {
        "config": {"batch": size, "gzip": gzip, "connections": connections, "body": len(body)},
        "received": received,
        "failures": failures,
        "elapsed_s": elapsed,
        "events_per_s": received / elapsed,
        **measured,
    }


def _flag_user(index: int, distinct_id: str, persons: list[dict[str, Any]]) -> FlagUser:
    """User ``index``: ``sample_person(index)``, one of 50 companies with a seat count."""
    return (
        distinct_id,
        persons[index],
        {"company": f"company-{index % 50}"},
        {"company": {"seats": index % 120}},
    )


def _flag_plan(
    users: list[FlagUser], keys: list[str], per_user: bool, calls: int
) -> list[FlagCall]:
    """The calls, in order: every key for one user before the next user (``per_user``, what a
    request checking each flag does), or users and keys both round-robin (call ``j``: user
    ``j % len(users)``, key ``j % len(keys)``)."""
    k, u = len(keys), len(users)
    if per_user:
        return [(keys[j % k], *users[j // k]) for j in range(u * k)]
    return [(keys[j % k], *users[j % u]) for j in range(calls)]


def _digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


async def _sink_stats(url: str) -> dict[str, Any]:
    return await asyncio.to_thread(sink_get, url, "/_local/stats", 10.0)


async def workload_flags(client_name: str, url: str | None, p: dict[str, Any]) -> dict[str, Any]:
    """Flag calls per second, local (definitions loaded, `only_evaluate_locally`) or remote.

    Before the clock starts: the sink serves the sample definitions; the client is built (and
    loads them when local); ``verify_users`` users that are not among the measured ones are
    evaluated untimed (the warm-up, and a digest of the values, so clients can be checked to
    agree). Then calls run until ``calls`` are made or ``duration`` seconds pass.
    """
    from _clients import ClientOptions, FlagOptions, make_client

    if url is None:
        raise ValueError("flags needs a sink")
    api, local = str(p["api"]), bool(p["local"])
    n_users, n_verify = int(p["users"]), int(p["verify_users"])
    fixture = await asyncio.to_thread(
        sink_get, url, f"/_bench/flag_fixture?users={n_users + n_verify}", 60.0
    )
    definitions, persons = fixture["definitions"], fixture["persons"]
    await asyncio.to_thread(sink_post, url, "/_local/flag_definitions", 30.0, definitions)
    keys = [str(flag["key"]) for flag in definitions["flags"]]
    users = [_flag_user(i, f"user-{i}", persons) for i in range(n_users)]
    verify = [_flag_user(n_users + i, f"verify-{i}", persons) for i in range(n_verify)]

    client = make_client(client_name, ClientOptions(url=url, events=0, send=False))
    await client.start_flags(FlagOptions(url=url, local=local, cache_ttl=p.get("cache_ttl")))
    calls = int(p.get("calls") or 0)
    stop = calls or 1 << 62  # time-bounded when `calls` is not set
    plan: list[FlagCall] = []
    if api == "get_feature_flag":
        plan = _flag_plan(users, keys, bool(p.get("per_user", True)), calls)
        checked = [await client.flag_value(call) for call in _flag_plan(verify, keys, True, 0)]
    elif api == "get_all_flags":
        checked = [await client.all_flags_value(user) for user in verify]
    else:
        raise ValueError(f"unknown flags api {api!r}")

    before = await _sink_stats(url)
    window = Window(url)
    await window.open()
    deadline = window.wall + float(p["duration"])
    if api == "get_feature_flag":
        run = await client.get_feature_flags(plan, 0, stop, deadline)
    else:
        run = await client.get_all_flags(users, 0, stop, deadline)
    elapsed = time.perf_counter() - window.wall
    measured = await window.close()
    after = await _sink_stats(url)

    per_s = run.calls / elapsed if elapsed > 0 else None
    distinct = len(plan) if api == "get_feature_flag" else n_users
    result: dict[str, Any] = {
        "config": client.config,
        "api": api,
        "local": local,
        "definitions": len(keys),
        "calls": run.calls,
        "elapsed_s": elapsed,
        "calls_per_s": per_s,
        "us_per_call": elapsed / run.calls * 1e6 if run.calls else None,
        # More calls than distinct (user, flag) pairs or users: the plan was cycled.
        "plan_cycles": run.calls / max(1, distinct),
        "undecided": run.undecided,
        "enabled": run.enabled,
        "flags_requests": int(after["flags_requests"]) - int(before["flags_requests"]),
        "definitions_requests": int(after["definitions_requests"]),
        "verify_calls": len(checked),
        "verify_undecided": sum(1 for v in checked if v is None)
        if api == "get_feature_flag"
        else sum(1 for d in checked for v in (d or {}).values() if v is None),
        "values_digest": _digest(checked),
        "peak_rss_mb": peak_rss_mb(),
        **measured,
    }
    if api == "get_all_flags":
        result["flags_returned"] = run.flags
        # Every call evaluates all the definitions: flags/s is users/s times their number.
        result["flags_per_s"] = per_s * len(keys) if per_s is not None else None
    return result


WORKLOADS: dict[str, Callable[[str, str | None, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "capture": workload_capture,
    "deliver": workload_deliver,
    "ceiling": workload_ceiling,
    "flags": workload_flags,
}


# -- entry point -------------------------------------------------------------------------------


@contextlib.contextmanager
def own_sink(url: str | None, delay: float) -> Iterator[str | None]:
    """The given sink URL, or a private sink process for the duration of the run."""
    if url is not None:
        yield url
        return
    from _common import BENCH_DIR, sink_post

    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "_sink.py"), "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.search(r"http://\S+", line)
        if match is None:
            raise RuntimeError(f"the sink did not start: {line!r}")
        sink_post(match.group(0), f"/_bench/reset?delay={delay}")
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """Profile the block with pyinstrument (the main thread: the event loop and the producer)."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        if path.suffix == ".html":
            path.write_text(profiler.output_html())
        else:
            # BENCH_PROFILE_ALL=1 keeps library frames (httpx, asyncio) in the text output.
            show_all = bool(os.environ.get("BENCH_PROFILE_ALL"))
            path.write_text(profiler.output_text(unicode=True, show_all=show_all))


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def main() -> int:
    """Run one measurement and print its JSON result line (exit status 1 on failure)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", required=True, help="aioposthog | official | official_async")
    parser.add_argument("--scenario", required=True, help="a name from _scenarios.SCENARIOS")
    parser.add_argument("--url", default=None, help="the sink (default: start a private one)")
    parser.add_argument("--quick", action="store_true", help="the scenario's quick parameters")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="profile the run with pyinstrument; .html for the interactive view, else text",
    )
    args = parser.parse_args()

    install_loopback_guard()
    from _scenarios import SCENARIOS

    scenario = SCENARIOS[args.scenario]
    params = scenario.params_for(args.quick)
    for item in args.set:
        key, _, raw = item.partition("=")
        params[key] = _parse_value(raw)
    result: dict[str, Any] = {
        "client": args.client,
        "scenario": scenario.name,
        "workload": scenario.workload,
        "params": params,
        "pid": os.getpid(),
    }
    try:
        with own_sink(args.url, scenario.sink_delay) as url:
            workload = WORKLOADS[scenario.workload]
            timeout = float(params.get("timeout", scenario.timeout))
            run = asyncio.wait_for(workload(args.client, url, params), timeout)
            with profiled(args.profile):
                result.update(asyncio.run(run))
        result["ok"] = True
    except BaseException as exc:  # reported to the runner, whatever it is
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["blocked_connections"] = list(BLOCKED)
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: the official client's atexit hook would flush whatever a
    # capped drain left behind, and non-daemon threads could hold the process open.
    os._exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
