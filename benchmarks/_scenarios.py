"""The scenario registry: what each scenario runs, measures, and is judged against.

A scenario names a worker *workload* (``capture``, ``deliver``, ``ceiling``, ``flags``; see
_worker.py) and its parameters, the metrics it reports, the clients it runs (and those it
cannot, with the reason), and its targets. Adding one means adding a workload function to
the worker if none fits, and one `register(Scenario(...))` call here; the runner, the report
and the chart pick it up from the registry.

Targets compare figures of the same run (medians), never numbers from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "ALL_CLIENTS",
    "CLIENT_LABELS",
    "REFERENCE",
    "SCENARIOS",
    "Figures",
    "Metric",
    "Scenario",
    "Stat",
    "Target",
    "Verdict",
    "register",
]

REFERENCE = "official"
"""Every ratio is to this client's median in the same run."""
ALL_CLIENTS = ("aioposthog", "official", "official_async")
CLIENT_LABELS = {
    "aioposthog": "aioposthog",
    "official": "official Posthog",
    "official_async": "official AsyncPosthog",
    "raw": "raw sender (sink ceiling)",
}

Workload = Literal["capture", "deliver", "ceiling", "flags"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure a scenario reports: a key of the worker's result dict."""

    key: str
    label: str
    unit: str
    better: Literal["lower", "higher"]
    digits: int = 1
    chart: bool = True
    """Whether chart.png gets a panel for it (the table always lists it)."""


@dataclass(frozen=True, slots=True)
class Stat:
    """The repetitions of one figure: median, min and max (and the raw values)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        ordered = sorted(self.values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


class Figures(Protocol):
    """The run's results, as targets read them."""

    def get(self, scenario: str, client: str, metric: str) -> Stat | None:
        """The figure, or None when that scenario, client or metric did not run."""
        ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """A target's outcome: met (None when it could not be judged) and what was compared.

    ``threshold`` is the value the median had to reach, drawn on the chart when given.
    """

    met: bool | None
    detail: str
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for aioposthog on one metric of a scenario."""

    metric: str
    text: str
    check: Callable[[Figures], Verdict]
    client: str = "aioposthog"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A registered scenario. ``quick`` overrides ``params`` under ``--quick``."""

    name: str
    title: str
    description: str
    workload: Workload
    params: Mapping[str, Any]
    metrics: tuple[Metric, ...]
    clients: tuple[str, ...] = ALL_CLIENTS
    full_clients: tuple[str, ...] | None = None
    """Clients under ``--full`` when they differ (slow peers skipped by default)."""
    quick: Mapping[str, Any] = field(default_factory=dict)
    sink_delay: float = 0.0
    timeout: float = 180.0
    """Seconds before the runner kills a worker of this scenario (scaled by --timeout-scale)."""
    targets: tuple[Target, ...] = ()
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    """Clients that cannot run this scenario, with the reason (listed as "n/a" in the report)."""

    def params_for(self, quick: bool) -> dict[str, Any]:
        """The worker parameters, with the quick overrides applied when asked."""
        merged = dict(self.params)
        if quick:
            merged.update(self.quick)
        return merged

    def clients_for(self, full: bool) -> tuple[str, ...]:
        """The clients to run (``--full`` adds the slow peers to the largest scenarios)."""
        return self.full_clients if full and self.full_clients else self.clients


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry (names are unique); return it."""
    if scenario.name in SCENARIOS:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    SCENARIOS[scenario.name] = scenario
    return scenario


# -- metrics -----------------------------------------------------------------------------------

US_PER_CALL = Metric("us_per_call", "capture cost", "µs/event", "lower", 2)
CALL_US = Metric("call_us", "time inside capture()", "µs/event", "lower", 2, chart=False)
EVENTS_PER_S = Metric("events_per_s", "delivered", "events/s", "higher", 0)
LOST = Metric("lost", "lost", "events", "lower", 0, chart=False)
LOST_PCT = Metric("lost_pct", "lost", "%", "lower", 1)
PEAK_RSS = Metric("peak_rss_mb", "peak RSS", "MB", "lower", 0)
LAG_P99 = Metric("lag_p99_ms", "loop lag p99", "ms", "lower", 2)
LAG_P50 = Metric("lag_p50_ms", "loop lag p50", "ms", "lower", 2)
LAG_OWN_P99 = Metric("lag_own_p99_ms", "loop lag p99, own CPU only", "ms", "lower", 2, chart=False)
"""The lag this process's own CPU use explains (see `LagMonitor`): the machine's share removed."""
SINK_RATE = Metric("events_per_s", "sink ceiling", "events/s", "higher", 0)
ATTEMPTED = Metric("events", "events captured", "events", "higher", 0, chart=False)
"""Where production is time-limited (bursts, loop lag): how far each client got."""
FLAG_EVALS = Metric("calls_per_s", "get_feature_flag, local", "evals/s", "higher", 0)
FLAG_EVAL_US = Metric("us_per_call", "time per evaluation", "µs", "lower", 2, chart=False)
ALL_FLAGS_USERS = Metric("calls_per_s", "get_all_flags, local", "users/s", "higher", 0)
ALL_FLAGS_FLAGS = Metric("flags_per_s", "flags evaluated", "flags/s", "higher", 0, chart=False)
ALL_FLAGS_US = Metric("us_per_call", "time per get_all_flags", "µs", "lower", 1, chart=False)
REMOTE_CALLS = Metric("calls_per_s", "get_feature_flag, remote", "calls/s", "higher", 0)
FLAGS_REQUESTS = Metric("flags_requests", "/flags requests at the sink", "requests", "lower", 0)
UNDECIDED = Metric("undecided", "values None (undecided)", "values", "lower", 0, chart=False)
"""Local runs: flags the client could not decide locally (0 expected: all 20 are decidable)."""


# -- target checks -----------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _fraction(value: float) -> str:
    """0.125 -> "1/8"; anything that is not a unit fraction as a decimal."""
    inverse = 1 / value
    return f"1/{inverse:.0f}" if abs(inverse - round(inverse)) < 1e-9 else f"{value:g}"


def at_most_fraction_of(scenario: str, metric: str, peer: str, fraction: float) -> Target:
    """aioposthog's median is at most ``fraction`` of ``peer``'s median (lower is better)."""

    def check(figures: Figures) -> Verdict:
        ours = figures.get(scenario, "aioposthog", metric)
        theirs = figures.get(scenario, peer, metric)
        if ours is None or theirs is None:
            return Verdict(None, f"not judged: {peer} or aioposthog did not run")
        limit = theirs.median * fraction
        return Verdict(
            ours.median <= limit,
            f"{_fmt(ours.median)} vs limit {_fmt(limit)} ({_fraction(fraction)} x "
            f"{CLIENT_LABELS[peer]})",
            limit,
        )

    return Target(metric, f"<= {_fraction(fraction)} x {CLIENT_LABELS[peer]}", check)


def at_least_times(scenario: str, metric: str, peer: str, factor: float) -> Target:
    """aioposthog's median is at least ``factor`` times ``peer``'s median (higher is better)."""

    def check(figures: Figures) -> Verdict:
        ours = figures.get(scenario, "aioposthog", metric)
        theirs = figures.get(scenario, peer, metric)
        if ours is None or theirs is None:
            return Verdict(None, f"not judged: {peer} or aioposthog did not run")
        need = theirs.median * factor
        ratio = ours.median / theirs.median if theirs.median else float("inf")
        return Verdict(
            ours.median >= need,
            f"{_fmt(ours.median)} vs {_fmt(need)} ({factor:g} x {CLIENT_LABELS[peer]}); "
            f"ratio {ratio:.1f}x",
            need,
        )

    return Target(metric, f">= {factor:g} x {CLIENT_LABELS[peer]}", check)


def throughput_targets(scenario: str, ceiling: str, peers_from: str) -> tuple[Target, ...]:
    """Delivered events/s: >= 10x official, >= 30x AsyncPosthog, >= 1/3 of the sink, no loss.

    ``peers_from`` is the scenario whose peer figures are compared: the scenario itself, or,
    for the 1M runs (where the peers would need minutes per run), the 100k run with the same
    compression. Rates are steady-state figures, so the comparison holds; ``--full`` runs the
    peers at 1M too, and then their own 1M figures are used.
    """

    def versus(peer: str, factor: float) -> Target:
        def check(figures: Figures) -> Verdict:
            ours = figures.get(scenario, "aioposthog", "events_per_s")
            theirs = figures.get(scenario, peer, "events_per_s")
            source = scenario
            if theirs is None:
                theirs, source = figures.get(peers_from, peer, "events_per_s"), peers_from
            if ours is None or theirs is None:
                return Verdict(None, "not judged: a client did not run")
            need = theirs.median * factor
            note = "" if source == scenario else f" ({peer} figure from {source})"
            return Verdict(ours.median >= need, f"{_fmt(ours.median)} vs {_fmt(need)}{note}", need)

        return Target("events_per_s", f">= {factor:g} x {CLIENT_LABELS[peer]}", check)

    def sink_share(figures: Figures) -> Verdict:
        ours = figures.get(scenario, "aioposthog", "events_per_s")
        sink = figures.get(ceiling, "raw", "events_per_s")
        if ours is None or sink is None:
            return Verdict(None, f"not judged: {ceiling} did not run")
        need = sink.median / 3
        return Verdict(
            ours.median >= need, f"{_fmt(ours.median)} vs {_fmt(need)} (ceiling / 3)", need
        )

    def nothing_lost(figures: Figures) -> Verdict:
        lost = figures.get(scenario, "aioposthog", "lost")
        if lost is None:
            return Verdict(None, "not judged")
        return Verdict(lost.max == 0, f"max over runs: {lost.max:,.0f}")

    return (
        versus("official", 10),
        versus("official_async", 30),
        Target("events_per_s", ">= 1/3 x sink ceiling", sink_share),
        Target("lost", "0 in every run", nothing_lost),
    )


def burst_block_targets() -> tuple[Target, ...]:
    """500k burst with backpressure: nothing lost, peak RSS <= 1/5 of the official client's."""

    def nothing_lost(figures: Figures) -> Verdict:
        lost = figures.get("burst_block", "aioposthog", "lost")
        if lost is None:
            return Verdict(None, "not judged")
        return Verdict(lost.max == 0, f"max over runs: {lost.max:,.0f}")

    return (
        Target("lost", "0 in every run", nothing_lost),
        at_most_fraction_of("burst_block", "peak_rss_mb", "official", 1 / 5),
    )


def lag_target() -> Target:
    """Event-loop lag p99 under 5 ms while sending at full speed."""

    def check(figures: Figures) -> Verdict:
        ours = figures.get("loop_lag", "aioposthog", "lag_p99_ms")
        if ours is None:
            return Verdict(None, "not judged")
        return Verdict(ours.median < 5.0, f"{ours.median:.2f} ms (median of the runs' p99)", 5.0)

    return Target("lag_p99_ms", "< 5 ms", check)


# -- the scenarios -----------------------------------------------------------------------------

for _gzip in (True, False):
    _suffix = "gzip" if _gzip else "plain"
    register(
        Scenario(
            name=f"sink_ceiling_{_suffix}",
            title=f"Sink ceiling, 1000-event batches, {'gzip' if _gzip else 'uncompressed'}",
            description=(
                "A raw sender posts one pre-built 1,000-event batch over 8 keep-alive "
                "connections for a few seconds: the most the sink accepts, in this run."
            ),
            workload="ceiling",
            params={"gzip": _gzip, "duration": 2.0, "connections": 8, "batch": 1000},
            quick={"duration": 1.0},
            metrics=(SINK_RATE,),
            clients=("raw",),
            timeout=60,
        )
    )

register(
    Scenario(
        name="capture_off",
        title="Capture-call cost, sending off",
        description=(
            "Wall time per capture() call over a tight loop, with sending turned off "
            "(`send=False` in all three: each builds and validates the event but queues nothing; "
            "aioposthog also JSON-encodes it, which the others leave to their sender)."
        ),
        workload="capture",
        params={"events": 50_000, "warmup": 2_000, "send": False, "yield_every": 0},
        quick={"events": 5_000, "warmup": 500},
        metrics=(US_PER_CALL,),
        timeout=120,
    )
)

register(
    Scenario(
        name="capture_live",
        title="Capture-call cost, sender live",
        description=(
            "Wall time per captured event while the sender sends to the sink, yielding to the "
            "loop every 10 events (so asyncio senders run, and their work on the loop counts, "
            "as threads' GIL contention counts for the threaded client). `call_us` is the time "
            "inside capture() calls only."
        ),
        workload="capture",
        params={"events": 50_000, "warmup": 2_000, "send": True, "yield_every": 10},
        quick={"events": 5_000, "warmup": 500},
        metrics=(US_PER_CALL, CALL_US),
        timeout=120,
        targets=(at_most_fraction_of("capture_live", "us_per_call", "official", 1 / 8),),
    )
)

for _events, _label in ((100_000, "100k"), (1_000_000, "1m")):
    for _gzip in (True, False):
        _suffix = "gzip" if _gzip else "plain"
        _name = f"throughput_{_label}_{_suffix}"
        _big = _events >= 1_000_000
        register(
            Scenario(
                name=_name,
                title=f"End to end, {_events:,} events, {'gzip' if _gzip else 'uncompressed'}",
                description=(
                    "Delivered events/s from the first capture until the sink has received "
                    "all of them; lost = captured - received (uuids checked for duplicates "
                    "where `unique` is reported)."
                ),
                workload="deliver",
                params={
                    "events": _events,
                    "gzip": _gzip,
                    "queue": "throughput",
                    "yield_every": 10,
                    "drain_timeout": 600.0 if _big else 120.0,
                    "verify_unique": not _big,
                },
                quick={"events": 100_000 if _big else 20_000},
                metrics=(EVENTS_PER_S, LOST),
                clients=("aioposthog",) if _big else ALL_CLIENTS,
                full_clients=ALL_CLIENTS if _big else None,
                timeout=900 if _big else 240,
                targets=throughput_targets(
                    _name, f"sink_ceiling_{_suffix}", f"throughput_100k_{_suffix}"
                ),
            )
        )

_BURST_NOTE = (
    "A burst is captures back to back, never yielding to the loop (a batch job, or a flood "
    "created in one synchronous stretch): 500,000 events or 20 s of capturing, whichever "
    "comes first (the official threaded client captures about 10,000 events/s here, so it "
    "stops at the time limit; its figures are per event attempted)."
)

register(
    Scenario(
        name="burst_default",
        title="500k burst, default queue",
        description=(
            _BURST_NOTE + " Each client keeps its default queue length and overflow policy "
            "(aioposthog: 100,000, drop_newest; official clients: 10,000, drop newest); "
            "lost = attempted - received."
        ),
        workload="deliver",
        params={
            "events": 500_000,
            "duration": 20.0,
            "gzip": True,
            "queue": "default",
            "yield_every": 0,
            "drain_timeout": 60.0,
        },
        quick={"events": 50_000, "duration": 5.0},
        metrics=(LOST_PCT, LOST, ATTEMPTED),
        timeout=180,
    )
)

register(
    Scenario(
        name="burst_block",
        title="500k burst, nothing dropped",
        description=(
            _BURST_NOTE + " Configured to lose nothing: aioposthog with overflow='block' and "
            "its defaults for it (a 10,000-event queue, 5,000-event batches); the official "
            "clients with a queue that holds the whole burst (they have no backpressure). Peak "
            "RSS (VmHWM) of the worker process. The "
            "official clients' delivery is given 5 s after the burst (their peak is reached "
            "while the burst is queued); events still queued then are reported as pending, "
            "not as lost."
        ),
        workload="deliver",
        params={
            "events": 500_000,
            "duration": 20.0,
            "gzip": True,
            "queue": "holds_burst",
            "yield_every": 0,
            "drain_timeout": 60.0,
            "peer_drain_timeout": 5.0,
        },
        quick={"events": 50_000, "duration": 5.0},
        metrics=(PEAK_RSS, LOST, ATTEMPTED),
        timeout=180,
        targets=burst_block_targets(),
    )
)

register(
    Scenario(
        name="slow_sink",
        title="Slow sink (50 ms per request)",
        description=(
            "End-to-end delivery when every capture request takes 50 ms to answer: what "
            "concurrency (or its absence) in the sender does."
        ),
        workload="deliver",
        params={
            "events": 50_000,
            "gzip": True,
            "queue": "throughput",
            "yield_every": 10,
            "drain_timeout": 120.0,
        },
        quick={"events": 10_000},
        metrics=(EVENTS_PER_S, LOST),
        sink_delay=0.05,
        timeout=180,
    )
)

register(
    Scenario(
        name="loop_lag",
        title="Event-loop lag while sending at full speed",
        description=(
            "A task on the loop sleeps 5 ms at a time and records how late it wakes, while "
            "the producer captures at full speed for 3 s (yielding every 10 events) and the "
            "client then drains (lag sampled for at most 4 s of draining). For the threaded "
            "client it is the lag of the asyncio loop its captures are made from."
        ),
        workload="deliver",
        params={
            "events": 2_000_000,
            "duration": 3.0,
            "gzip": True,
            "queue": "throughput",
            "yield_every": 10,
            "lag": True,
            "drain_timeout": 4.0,
        },
        quick={"duration": 1.5, "drain_timeout": 3.0},
        metrics=(LAG_P99, LAG_P50, LAG_OWN_P99, ATTEMPTED),
        timeout=120,
        targets=(lag_target(),),
    )
)

# -- feature flags -----------------------------------------------------------------------------

_FLAG_SETUP = (
    "The 20 definitions of `aioposthog.testing.sample_flag_definitions()` (rollouts, person "
    "filters with every common operator, multivariate flags with payloads, a nested cohort, "
    "group flags, a flag dependency, an inactive flag, a kill switch), all decidable locally "
    "for `sample_person(i)` with `groups={'company': f'company-{i % 50}'}` and "
    "`group_properties={'company': {'seats': i % 120}}`."
)
_NO_LOCAL_ASYNC = (
    "AsyncPosthog (posthog 7.91.1) has no local evaluation: no definitions poller, and "
    "evaluate_flags (its only flag API) always posts to /flags; remote calls are not local "
    "evaluations, so it is not measured here (see flags_remote)."
)
_LOCAL_CLIENTS = ("aioposthog", "official")

register(
    Scenario(
        name="flags_local_get_feature_flag",
        title="Local flag evaluation: get_feature_flag",
        description=(
            _FLAG_SETUP + " Definitions loaded before the clock starts; then "
            "get_feature_flag(key, distinct_id, person_properties, groups, group_properties, "
            "only_evaluate_locally=True, no $feature_flag_called event) for each of the 20 keys "
            "per user, over 10,000 users, for 4 s. The official Posthog client: "
            "get_feature_flag_result (the same evaluation without get_feature_flag's "
            "per-call DeprecationWarning)."
        ),
        workload="flags",
        params={
            "api": "get_feature_flag",
            "local": True,
            "users": 10_000,
            "per_user": True,
            "verify_users": 100,
            "duration": 4.0,
        },
        quick={"users": 2_000, "duration": 1.0, "verify_users": 20},
        metrics=(FLAG_EVALS, FLAG_EVAL_US, UNDECIDED),
        clients=_LOCAL_CLIENTS,
        timeout=90,
        targets=(at_least_times("flags_local_get_feature_flag", "calls_per_s", "official", 5),),
        not_applicable={"official_async": _NO_LOCAL_ASYNC},
    )
)

register(
    Scenario(
        name="flags_local_get_all_flags",
        title="Local flag evaluation: get_all_flags",
        description=(
            _FLAG_SETUP + " get_all_flags(distinct_id, ..., only_evaluate_locally=True) per "
            "user, over 10,000 users, for 4 s: users/s, and flags/s (users/s x 20)."
        ),
        workload="flags",
        params={
            "api": "get_all_flags",
            "local": True,
            "users": 10_000,
            "verify_users": 100,
            "duration": 4.0,
        },
        quick={"users": 2_000, "duration": 1.0, "verify_users": 20},
        metrics=(ALL_FLAGS_USERS, ALL_FLAGS_FLAGS, ALL_FLAGS_US, UNDECIDED),
        clients=_LOCAL_CLIENTS,
        timeout=90,
        targets=(at_least_times("flags_local_get_all_flags", "calls_per_s", "official", 5),),
        not_applicable={"official_async": _NO_LOCAL_ASYNC},
    )
)

_REMOTE_NOTE = (
    "Remote evaluation: no secure key, so every flag read is a POST /flags?v=2 for that one "
    "key, made one after another (each call awaited before the next), with the same person, "
    "group and group properties as the local scenarios. The official Posthog client: "
    "get_feature_flag_result, a blocking call; AsyncPosthog: evaluate_flags(flag_keys=[key]) "
    "then get_flag(key). Neither official client caches /flags answers. "
    "`/flags requests` is what the sink counted."
)

register(
    Scenario(
        name="flags_remote",
        title="Remote flag calls, cache off",
        description=(
            _REMOTE_NOTE + " Cache off: 2,000 calls, each for a different user (keys "
            "round-robin), so nothing can be reused or coalesced: one request per call."
        ),
        workload="flags",
        params={
            "api": "get_feature_flag",
            "local": False,
            "users": 2_000,
            "per_user": False,
            "calls": 2_000,
            "verify_users": 2,
            "duration": 6.0,
        },
        quick={"users": 300, "calls": 300},
        metrics=(REMOTE_CALLS, FLAGS_REQUESTS),
        timeout=90,
    )
)

register(
    Scenario(
        name="flags_remote_cached",
        title="Remote flag calls, aioposthog's answer cache on",
        description=(
            _REMOTE_NOTE + " Repeated users: 2,000 calls over 200 users (user j % 200, key "
            "j % 20: 200 distinct questions, each asked 10 times). aioposthog with "
            "flag_cache_ttl=60 asks /flags once per distinct question; the official clients "
            "have no such cache and ask every time."
        ),
        workload="flags",
        params={
            "api": "get_feature_flag",
            "local": False,
            "users": 200,
            "per_user": False,
            "calls": 2_000,
            "cache_ttl": 60.0,
            "verify_users": 2,
            "duration": 6.0,
        },
        quick={"users": 20, "calls": 200},
        metrics=(REMOTE_CALLS, FLAGS_REQUESTS),
        timeout=90,
    )
)
