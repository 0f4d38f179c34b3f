"""Run the side-by-side benchmark suite: aioposthog against the official PostHog clients.

    python benchmarks/run.py                      # everything, 3 repetitions (< 15 min)
    python benchmarks/run.py --quick              # 1 repetition, small N: a smoke run
    python benchmarks/run.py --scenarios capture_off,capture_live --reps 5
    python benchmarks/run.py --list               # the registered scenarios

One sink process (LocalPostHog on 127.0.0.1) serves the whole run; every measurement is a
fresh worker process (benchmarks/_worker.py) for one client in one scenario, and the clients
take turns within each repetition (A, B, C; then B, C, A; ...) so that drift on the machine
spreads over all of them. Results go to benchmarks/results/ (results/quick/ with --quick):
results.json (every run's raw figures), results.md (the table), chart.png.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import re
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from _common import BENCH_DIR, REPO_DIR, SRC_DIR, child_env, sink_get, sink_post
from _report import (
    Summary,
    fmt_ratio,
    fmt_value,
    not_applicable,
    write_chart,
    write_json,
    write_markdown,
)
from _scenarios import CLIENT_LABELS, SCENARIOS, Scenario

_SINK_START_TIMEOUT = 30.0


class Sink:
    """The sink process: started once, reset before every run, restarted if it died."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        # keep_events (the default) so that `?unique=1` can check for duplicate deliveries;
        # the store is cleared before every run, so memory stays bounded by one run.
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "_sink.py"), "--port", "0"],
            stdin=subprocess.PIPE,  # closed when we exit: the sink then stops by itself
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        line = _readline(self.process.stdout, _SINK_START_TIMEOUT)
        match = re.search(r"http://\S+", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the sink did not start within {_SINK_START_TIMEOUT}s: {line!r}")
        self.url = match.group(0)

    def ensure(self) -> None:
        """Restart the sink if it is gone or stops answering."""
        if self.process is not None and self.process.poll() is None:
            try:
                sink_get(self.url, "/_health", 10.0)
                return
            except OSError:
                pass
        print("  (restarting the sink)", file=sys.stderr)
        self.stop()
        self.start()

    def reset(self, delay: float) -> None:
        """Forget events and set the per-request delay before a run."""
        self.ensure()
        sink_post(self.url, f"/_bench/reset?delay={delay}", 60.0)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _readline(stream: IO[bytes] | None, timeout: float) -> str:
    """One line from a child's stdout, or "" after ``timeout`` seconds."""
    if stream is None:
        return ""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().decode(errors="replace") if ready else ""


def run_worker(
    sink: Sink, scenario: Scenario, client: str, quick: bool, timeout: float
) -> dict[str, Any]:
    """One measurement in a fresh process; its JSON result, or a failure record."""
    sink.reset(scenario.sink_delay)
    command = [
        sys.executable,
        str(BENCH_DIR / "_worker.py"),
        "--client",
        client,
        "--scenario",
        scenario.name,
        "--url",
        sink.url,
    ]
    if quick:
        command.append("--quick")
    started = time.perf_counter()
    base: dict[str, Any] = {"client": client, "scenario": scenario.name, "ok": False}
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=timeout, env=child_env(), check=False
        )
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:.0f}s", "wall_s": timeout}
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.strip()]
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
        return {**base, "error": f"exit {done.returncode}, no result: {' | '.join(tail)}"}
    result["wall_s"] = wall
    if not result.get("ok"):
        # Keep the worker's own stderr (a traceback, a client's log) next to its error.
        result["stderr_tail"] = done.stderr.decode(errors="replace")[-2000:]
    return result


def _progress(rep: int, reps: int, run: dict[str, Any]) -> str:
    scenario = SCENARIOS[run["scenario"]]
    label = CLIENT_LABELS.get(run["client"], run["client"])
    head = f"[{rep}/{reps}] {run['scenario']:<28} {label:<26}"
    if not run.get("ok"):
        return f"{head} FAILED: {run.get('error')}"
    figures = []
    for metric in scenario.metrics:
        value = run.get(metric.key)
        if isinstance(value, int | float):
            figures.append(f"{fmt_value(float(value), metric)} {metric.unit}")
    other = run.get("other_cpu_cores")
    noise = f"  others {other:.2f} cores" if isinstance(other, int | float) else ""
    pending = f"  pending {run['pending']:,}" if run.get("pending") else ""
    return f"{head} {', '.join(figures)}{pending}  ({run.get('wall_s', 0):.1f}s){noise}"


def select_scenarios(spec: str | None) -> list[Scenario]:
    """Scenarios by comma-separated names or shell patterns (``throughput_*``), in order."""
    if not spec:
        return list(SCENARIOS.values())
    chosen: list[Scenario] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        matches = [s for name, s in SCENARIOS.items() if fnmatch.fnmatchcase(name, part)]
        if not matches:
            raise SystemExit(f"no scenario matches {part!r}; see --list")
        chosen += [s for s in matches if s not in chosen]
    return [s for s in SCENARIOS.values() if s in chosen]  # registry order


def _agreement_notes(runs: list[dict[str, Any]]) -> list[str]:
    """Whether the clients returned the same flag values (the flags workload's check calls).

    Every flags run evaluates the same check users before its clock starts and reports a
    digest of the values; rates are only comparable when every client gave the same answers.
    """
    digests: dict[str, dict[str, set[str]]] = {}
    for run in runs:
        digest = run.get("values_digest")
        if run.get("ok") and isinstance(digest, str):
            digests.setdefault(run["scenario"], {}).setdefault(run["client"], set()).add(digest)
    agreed, notes = [], []
    for scenario, by_client in digests.items():
        seen = set().union(*by_client.values())
        if len(seen) > 1:
            detail = "; ".join(f"{c}: {', '.join(sorted(d))}" for c, d in by_client.items())
            notes.append(
                f"{scenario}: the clients returned DIFFERENT flag values for the check users "
                f"({detail}): its rates compare different answers."
            )
        elif len(by_client) > 1:
            agreed.append(scenario)
    if agreed:
        notes.insert(
            0,
            "Flag values: every client returned the same values for the untimed check users "
            f"in {', '.join(agreed)} (digest of the values, in results.json).",
        )
    return notes


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in ("posthog", "httpx", "h11", "requests"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    text = (SRC_DIR / "aioposthog" / "_version.py").read_text()
    found = re.search(r"['\"]([^'\"]+)['\"]", text)
    out["aioposthog"] = found.group(1) if found else "?"
    return out


def _git() -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO_DIR, capture_output=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.decode(errors="replace").strip()

    dirty = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": "yes" if dirty else "no"}


def main() -> int:
    """Run the selected scenarios and write the results; exit 1 if a run failed."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition, small N")
    parser.add_argument("--scenarios", help="comma-separated names or patterns (default: all)")
    parser.add_argument("--clients", help="comma-separated subset of the clients")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also run the official clients on 1M events (adds ~10 minutes per repetition)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default benchmarks/results)")
    parser.add_argument(
        "--timeout-scale", type=float, default=1.0, help="multiply every per-run timeout"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args()

    if args.list:
        for s in SCENARIOS.values():
            na = f"; n/a: {', '.join(s.not_applicable)}" if s.not_applicable else ""
            print(f"{s.name:<28} {s.title}  [{', '.join(s.clients)}{na}]")
        return 0
    scenarios = select_scenarios(args.scenarios)
    wanted = set(args.clients.split(",")) if args.clients else None
    reps = args.reps or (1 if args.quick else 3)
    out: Path = args.out or (BENCH_DIR / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)

    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_before = os.getloadavg()
    meta: dict[str, Any] = {
        "command": " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        "started": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} Linux, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "cpus": os.cpu_count(),
        "repetitions": reps,
        "quick": args.quick,
        "full": args.full,
        "scenarios": [s.name for s in scenarios],
        "versions": _versions(),
        "git": _git(),
        "src": str(SRC_DIR),
        "load_average_before": load_before,
    }
    print(
        f"aioposthog benchmarks: {len(scenarios)} scenarios x {reps} repetition(s)"
        f"{' (quick)' if args.quick else ''}; aioposthog {meta['versions']['aioposthog']} "
        f"from {SRC_DIR}, posthog {meta['versions']['posthog']}; load average "
        f"{load_before[0]:.2f}",
        file=sys.stderr,
    )

    sink = Sink()
    sink.start()
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            for scenario in scenarios:
                clients = [
                    c
                    for c in scenario.clients_for(args.full)
                    if wanted is None or c in wanted or c == "raw"
                ]
                shift = rep % len(clients) if clients else 0
                for client in clients[shift:] + clients[:shift]:
                    run = run_worker(
                        sink, scenario, client, args.quick, scenario.timeout * args.timeout_scale
                    )
                    run["repetition"] = rep + 1
                    runs.append(run)
                    print(_progress(rep + 1, reps, run), file=sys.stderr, flush=True)
    finally:
        sink.stop()

    meta["total_s"] = time.perf_counter() - started
    meta["load_average_after"] = os.getloadavg()
    summary = Summary(runs, scenarios)
    others = [r["other_cpu_cores"] for r in runs if isinstance(r.get("other_cpu_cores"), float)]
    notes = []
    if others and max(others) > 0.2:
        busy = sum(1 for o in others if o > 0.2)
        notes.append(
            f"Other processes kept {sum(others) / len(others):.2f} cores busy on average during "
            f"the measurements ({busy} of {len(others)} runs above 0.2 cores, load average "
            f"{load_before[0]:.2f} at the start): on this {os.cpu_count()}-core machine the "
            "figures are noisier and slower than on an idle one; the ratios, measured "
            "interleaved under the same conditions, are the figures to read."
        )
    blocked = sorted({b for r in runs for b in r.get("blocked_connections") or ()})
    notes.append(
        "Non-loopback connections or lookups attempted by the clients: "
        + (", ".join(blocked) + " (refused)" if blocked else "none.")
    )
    notes += _agreement_notes(runs)
    if meta["git"].get("src_dirty") == "yes" and (REPO_DIR / "src").resolve() == SRC_DIR:
        notes.append("src/ had uncommitted changes when this ran.")
    if (REPO_DIR / "src").resolve() != SRC_DIR:
        notes.append(f"aioposthog measured from {SRC_DIR} ($AIOPOSTHOG_BENCH_SRC).")
    meta["notes"] = notes

    write_json(out / "results.json", summary, meta)
    write_markdown(out / "results.md", summary, meta)
    write_chart(out / "chart.png", summary, meta)

    print("", file=sys.stderr)
    for row in summary.rows:
        verdicts = summary.targets_for(row.scenario.name, row.metric.key, row.client)
        marks = " ".join(
            ("OK" if t.verdict.met else "MISSED" if t.verdict.met is False else "n/a")
            + f" ({t.text})"
            for t in verdicts
        )
        print(
            f"{row.scenario.name:<28} {row.metric.label:<27} {row.client:<15} "
            f"{fmt_value(row.stat.median, row.metric):>12} {row.metric.unit:<9} "
            f"{fmt_ratio(row.ratio):>7}  {marks}"
        )
    for item in not_applicable(summary):
        print(f"{item['scenario']:<28} {'(all)':<27} {item['client']:<15} {'n/a':>12}")
    print(f"\ntotal {meta['total_s']:.0f} s; results in {out}/", file=sys.stderr)
    return 0 if all(r.get("ok") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
