"""Aggregating runs into medians, judging targets, and writing results.json/.md and chart.png."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _scenarios import CLIENT_LABELS, REFERENCE, SCENARIOS, Metric, Scenario, Stat, Verdict

__all__ = ["Row", "Summary", "not_applicable", "write_chart", "write_json", "write_markdown"]

_COLORS = {
    "aioposthog": "#1f77b4",
    "official": "#ff7f0e",
    "official_async": "#2ca02c",
    "raw": "#7f7f7f",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One (scenario, metric, client) figure with its ratio to the reference client."""

    scenario: Scenario
    metric: Metric
    client: str
    stat: Stat
    ratio: float | None
    runs: int
    failures: int


@dataclass(frozen=True, slots=True)
class TargetResult:
    """A judged target, for the report."""

    scenario: str
    metric: str
    client: str
    text: str
    verdict: Verdict


class Summary:
    """The run's figures: medians, min and max per (scenario, client, metric), and targets."""

    def __init__(self, runs: Sequence[dict[str, Any]], scenarios: Sequence[Scenario]) -> None:
        self.runs = list(runs)
        self.scenarios = list(scenarios)
        self._values: dict[tuple[str, str, str], list[float]] = {}
        self._failures: dict[tuple[str, str], int] = {}
        for run in self.runs:
            key = (run["scenario"], run["client"])
            if not run.get("ok"):
                self._failures[key] = self._failures.get(key, 0) + 1
                continue
            for metric in SCENARIOS[run["scenario"]].metrics:
                value = run.get(metric.key)
                if isinstance(value, int | float) and math.isfinite(value):
                    self._values.setdefault((*key, metric.key), []).append(float(value))
        self.rows = [row for scenario in self.scenarios for row in self._rows(scenario)]
        self.targets = [
            TargetResult(
                scenario.name, target.metric, target.client, target.text, target.check(self)
            )
            for scenario in self.scenarios
            for target in scenario.targets
        ]

    def get(self, scenario: str, client: str, metric: str) -> Stat | None:
        """The figure, or None when it was not measured (the `Figures` protocol)."""
        values = self._values.get((scenario, client, metric))
        return Stat(tuple(values)) if values else None

    def _rows(self, scenario: Scenario) -> list[Row]:
        clients = sorted(
            {run["client"] for run in self.runs if run["scenario"] == scenario.name},
            key=lambda c: (list(CLIENT_LABELS).index(c) if c in CLIENT_LABELS else 99, c),
        )
        rows = []
        for metric in scenario.metrics:
            reference = self.get(scenario.name, REFERENCE, metric.key)
            for client in clients:
                stat = self.get(scenario.name, client, metric.key)
                failures = self._failures.get((scenario.name, client), 0)
                if stat is None:
                    if failures:
                        rows.append(
                            Row(scenario, metric, client, Stat((math.nan,)), None, 0, failures)
                        )
                    continue
                ratio = None
                if reference is not None and reference.median not in (0, 0.0):
                    ratio = stat.median / reference.median
                rows.append(Row(scenario, metric, client, stat, ratio, len(stat.values), failures))
        return rows

    def targets_for(self, scenario: str, metric: str, client: str) -> list[TargetResult]:
        """The targets judged on this row."""
        return [
            t
            for t in self.targets
            if t.scenario == scenario and t.metric == metric and t.client == client
        ]

    def conditions(self, scenario: str, client: str) -> dict[str, float | None]:
        """Medians of the run conditions: sink CPU share, worker CPU share, others' CPU."""
        out: dict[str, float | None] = {}
        for key in ("sink_cpu_share", "worker_cpu_share", "other_cpu_cores"):
            values = [
                float(run[key])
                for run in self.runs
                if run["scenario"] == scenario
                and run["client"] == client
                and run.get("ok")
                and isinstance(run.get(key), int | float)
            ]
            out[key] = Stat(tuple(values)).median if values else None
        return out


# -- formatting ---------------------------------------------------------------------------------


def fmt_value(value: float, metric: Metric) -> str:
    """A figure with its metric's precision and thousands separators."""
    if math.isnan(value):
        return "failed"
    return f"{value:,.{metric.digits}f}"


def fmt_ratio(ratio: float | None) -> str:
    """``0.12x`` / ``9.6x``, or an em dash when there is nothing to compare."""
    if ratio is None:
        return "—"
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    if ratio >= 1:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def _met(verdict: Verdict) -> str:
    return {True: "✅ yes", False: "❌ no", None: "n/a"}[verdict.met]


def not_applicable(summary: Summary) -> list[dict[str, str]]:
    """The clients the run's scenarios cannot measure, with the reason."""
    return [
        {"scenario": scenario.name, "client": client, "reason": reason}
        for scenario in summary.scenarios
        for client, reason in scenario.not_applicable.items()
    ]


# -- outputs ------------------------------------------------------------------------------------


def write_json(path: Path, summary: Summary, meta: dict[str, Any]) -> None:
    """Everything: metadata, every run's raw result, the aggregated rows and the targets."""
    document = {
        "meta": meta,
        "summary": [
            {
                "scenario": row.scenario.name,
                "metric": row.metric.key,
                "unit": row.metric.unit,
                "client": row.client,
                "median": None if math.isnan(row.stat.median) else row.stat.median,
                "min": None if math.isnan(row.stat.min) else row.stat.min,
                "max": None if math.isnan(row.stat.max) else row.stat.max,
                "values": [v for v in row.stat.values if not math.isnan(v)],
                "ratio_vs_official": row.ratio,
                "runs": row.runs,
                "failures": row.failures,
                **summary.conditions(row.scenario.name, row.client),
            }
            for row in summary.rows
        ],
        "targets": [
            {
                "scenario": t.scenario,
                "metric": t.metric,
                "client": t.client,
                "target": t.text,
                "met": t.verdict.met,
                "detail": t.verdict.detail,
            }
            for t in summary.targets
        ],
        "not_applicable": not_applicable(summary),
        "runs": summary.runs,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def markdown(summary: Summary, meta: dict[str, Any]) -> str:
    """The results as Markdown: the main table, the targets, and the run conditions."""
    reps = meta.get("repetitions")
    lines = [
        "# aioposthog benchmark results",
        "",
        f"`{meta.get('command', 'python benchmarks/run.py')}` on {meta.get('machine', '?')}, "
        f"{meta.get('started', '?')}; {reps} repetition(s), total {meta.get('total_s', 0):.0f} s."
        + (" **Quick mode: smoke figures only.**" if meta.get("quick") else ""),
        "",
        "Medians of the repetitions, with min and max; the ratio is the median divided by the "
        "official `Posthog` client's median in this same run (lower is better for times, lost "
        "events and memory; higher for events/s). Each run is a fresh process; clients are "
        "interleaved within each repetition. See benchmarks/README.md for what each scenario "
        "measures and how each client is configured.",
        "",
        "| scenario | metric | client | median | min | max | ratio vs official | target | met? |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    last_row = {row.scenario.name: index for index, row in enumerate(summary.rows)}
    for index, row in enumerate(summary.rows):
        targets = summary.targets_for(row.scenario.name, row.metric.key, row.client)
        failed = f" ({row.failures} failed)" if row.failures else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{row.scenario.name}",
                    f"{row.metric.label} ({row.metric.unit})",
                    CLIENT_LABELS.get(row.client, row.client) + failed,
                    fmt_value(row.stat.median, row.metric),
                    fmt_value(row.stat.min, row.metric),
                    fmt_value(row.stat.max, row.metric),
                    fmt_ratio(row.ratio),
                    "<br>".join(t.text for t in targets),
                    "<br>".join(_met(t.verdict) for t in targets),
                ]
            )
            + " |"
        )
        if last_row[row.scenario.name] == index:
            for client in row.scenario.not_applicable:
                label = CLIENT_LABELS.get(client, client)
                lines.append(f"| {row.scenario.name} | (all) | {label} | n/a¹ | | | | | |")
    skipped: dict[tuple[str, str], list[str]] = {}
    for item in not_applicable(summary):
        skipped.setdefault((item["client"], item["reason"]), []).append(item["scenario"])
    if skipped:
        lines += ["", "¹ Not measured, by design:"]
        lines += [
            f"- {CLIENT_LABELS.get(client, client)} in {', '.join(names)}: {reason}"
            for (client, reason), names in skipped.items()
        ]
    lines += ["", "## Targets", "", "| scenario | target | met? | figures |", "|---|---|---|---|"]
    for t in summary.targets:
        label = next(m.label for m in SCENARIOS[t.scenario].metrics if m.key == t.metric)
        lines.append(
            f"| {t.scenario} | {label} {t.text} | {_met(t.verdict)} | {t.verdict.detail} |"
        )
    runtime = meta.get("total_s", 0.0)
    lines += [
        f"| (suite) | total runtime < 15 min | {'✅ yes' if runtime < 900 else '❌ no'} "
        f"| {runtime:.0f} s |",
        "",
        "## Run conditions",
        "",
        "Medians over the measured windows. *sink CPU* is the sink process's CPU time over the "
        "window (1.0 = one core: the sink set the pace); *client CPU* the worker process's; "
        "*other processes* the CPU used by everything else on the machine, in cores (this "
        f"machine has {meta.get('cpus', '?')}): above ~0.2 the figures of that run are noisy.",
        "",
        "| scenario | client | sink CPU | client CPU | other processes (cores) |",
        "|---|---|---:|---:|---:|",
    ]
    seen: set[tuple[str, str]] = set()
    for row in summary.rows:
        key = (row.scenario.name, row.client)
        if key in seen:
            continue
        seen.add(key)
        c = summary.conditions(*key)

        def pct(value: float | None) -> str:
            return "—" if value is None else f"{value * 100:.0f}%"

        other = c["other_cpu_cores"]
        lines.append(
            f"| {key[0]} | {CLIENT_LABELS.get(key[1], key[1])} | {pct(c['sink_cpu_share'])} "
            f"| {pct(c['worker_cpu_share'])} | {'—' if other is None else f'{other:.2f}'} |"
        )
    notes = meta.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, summary: Summary, meta: dict[str, Any]) -> None:
    """results.md."""
    path.write_text(markdown(summary, meta))


def write_chart(path: Path, summary: Summary, meta: dict[str, Any]) -> None:
    """chart.png: one panel per scenario metric, a bar per client, whiskers from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[Scenario, Metric, list[Row]]] = []
    for scenario in summary.scenarios:
        for metric in scenario.metrics:
            if not metric.chart:
                continue
            rows = [
                r
                for r in summary.rows
                if r.scenario.name == scenario.name
                and r.metric.key == metric.key
                and not math.isnan(r.stat.median)
            ]
            if rows:
                panels.append((scenario, metric, rows))
    if not panels:
        return
    cols = 3
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.6 * nrows), squeeze=False)
    for index, (scenario, metric, rows) in enumerate(panels):
        ax = axes[index // cols][index % cols]
        labels = [CLIENT_LABELS.get(r.client, r.client).replace("official ", "") for r in rows]
        medians = [r.stat.median for r in rows]
        lower = [r.stat.median - r.stat.min for r in rows]
        upper = [r.stat.max - r.stat.median for r in rows]
        colors = [_COLORS.get(r.client, "#999999") for r in rows]
        bars = ax.bar(labels, medians, color=colors, yerr=[lower, upper], capsize=4)
        for bar, row in zip(bars, rows, strict=True):
            text = fmt_value(row.stat.median, metric)
            if row.ratio is not None and row.client != REFERENCE:
                text += f"\n{fmt_ratio(row.ratio)}"
            ax.annotate(  # above the whisker, so the label never sits on it
                text,
                (bar.get_x() + bar.get_width() / 2, row.stat.max),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        top = max(r.stat.max for r in rows)
        targets = [
            t
            for t in summary.targets
            if t.scenario == scenario.name
            and t.metric == metric.key
            and t.verdict.threshold is not None
        ]
        for t in targets:
            assert t.verdict.threshold is not None
            color = "#2ca02c" if t.verdict.met else "#d62728"
            ax.axhline(t.verdict.threshold, color=color, linestyle="--", linewidth=1)
            ax.annotate(
                f"target {t.text}",
                (0, t.verdict.threshold),
                xycoords=("axes fraction", "data"),
                xytext=(2, 2),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
            top = max(top, t.verdict.threshold)
        ax.set_ylim(0, (top or 1.0) * 1.4)
        ax.set_title(
            f"{scenario.name}\n{metric.label} ({metric.unit}, {metric.better} is better)",
            fontsize=9,
        )
        ax.tick_params(axis="x", labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for index in range(len(panels), nrows * cols):
        axes[index // cols][index % cols].axis("off")
    fig.suptitle(
        f"aioposthog vs the official PostHog clients: medians of {meta.get('repetitions')} "
        "run(s), whiskers min-max, ratio to official Posthog under each value"
        + (" (QUICK MODE)" if meta.get("quick") else ""),
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
