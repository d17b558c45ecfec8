"""The harness report, in markdown: figures, the audit's checks, every fault and its recovery."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from harness.audit import Audit
from harness.faults import Fault
from harness.load import LoadResult
from harness.sampler import METRICS, Sampler


def _secs(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"


def render(
    config: dict[str, Any],
    load: LoadResult,
    faults: list[Fault],
    audit: Audit,
    timings: dict[str, float],
) -> str:
    kinds = Counter(f.kind for f in faults if f.started)
    recovered = [f.recovered_after for f in faults if f.recovered_after is not None]
    unrecovered = [f for f in faults if f.started and f.recovered_after is None]
    dup_kinds = ("twin", "reordered", "idempotent", "after_completion")
    replayed = sum(1 for a in load.answers if a.replayed)
    lines = [
        "# vidjobs fault harness report",
        "",
        f"**Audit: {'PASSED' if audit.passed else 'FAILED'}** — seed `{config['seed']}`, "
        f"command `{config['command']}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| jobs (distinct keys accepted) | {audit.figures.get('jobs')} |",
        f"| submissions sent | {len(load.answers)} |",
        f"| duplicate submissions sent | {sum(load.count(k) for k in dup_kinds)} "
        f"({', '.join(f'{k} {load.count(k)}' for k in dup_kinds)}) |",
        f"| duplicates answered with the existing job (200, replayed) | {replayed} |",
        f"| succeeded / failed | {audit.figures.get('succeeded')} / {audit.figures.get('failed')} |",
        f"| jobs of tasks (their tasks) | {audit.figures.get('jobs_of_tasks')} ({audit.figures.get('tasks')}) |",
        f"| **lost** | **{audit.figures.get('lost')}** |",
        f"| **double effects** | **{audit.figures.get('double_effects')}** |",
        f"| requests that got no answer | {len(load.gave_up)} |",
        f"| faults injected | {sum(kinds.values())} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) |",
        f"| **load / capacity** | **{audit.figures.get('achieved', 0) / max(1e-9, audit.figures.get('capacity', 1)):.2f}** "
        f"(new jobs offered {audit.figures.get('achieved', 0):.1f}/s over the load window, planned "
        f"{audit.figures.get('offered', 0):.1f}/s; capacity {config.get('capacity', 'n/a')}) |",
        f"| webhook effects (deduplicated) | {audit.figures.get('webhook_effects')} |",
        f"| fault to progress resuming | {_secs(recovered)}"
        + (f" (max {max(recovered) / config['lease']:.2f} leases)" if recovered and config.get("lease") else "")
        + " |",
        f"| attempts per job | {audit.figures.get('attempts_histogram')} |",
        f"| load window / drain / total | {timings['load']:.0f} s / {timings['drain']:.0f} s / {timings['total']:.0f} s |",
        f"| fleet | {config['fleet']} |",
        "",
        "## Audit",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {'ok' if ok else '**FAILED**'} | {detail} |"
        for name, (ok, detail) in audit.checks.items()
    ]
    lines += [
        "",
        "## Faults",
        "",
        "Faults one at a time: each began at its planned time or, when the fleet had not yet "
        "recovered from the one before (a job completed since, every worker serving), once it had.",
        "",
        "| at (s) | planned (s) | waited for the fleet (s) | kind | target | recovered after (s) |",
        "|---|---|---|---|---|---|",
    ]
    for f in faults:
        if f.started:
            rec = f"{f.recovered_after:.2f}" if f.recovered_after is not None else "not measured"
            began = f"{f.began:.1f}" if f.began is not None else "?"
            lines.append(f"| {began} | {f.at:.1f} | {f.waited:.1f} | {f.kind} | {f.note} | {rec} |")
    by_kind: dict[str, list[float]] = {}
    for f in faults:
        if f.recovered_after is not None:
            by_kind.setdefault(f.kind, []).append(f.recovered_after)
    lines += [
        "",
        "Recovery by kind: " + "; ".join(f"{k}: {_secs(v)}" for k, v in sorted(by_kind.items())),
    ]
    if unrecovered:
        lines.append(
            f"Faults after which no job completed within 120 s (e.g. at the end of the load): {len(unrecovered)}"
        )
    if load.gave_up:
        lines += [
            "",
            "Requests without a final answer:",
            *[f"- {k} {i}: {why}" for k, i, why in load.gave_up[:20]],
        ]
    return "\n".join(lines) + "\n"


def render_soak(sampler: Sampler, warmup: float, window: float) -> tuple[str, bool]:
    """The soak section: per process and metric, the median after warm-up and at the end,
    a timeline of samples, and the database's growth per job. Passes when nothing grew by
    more than 10% (counts: or by 1) from the window after warm-up to the last window."""
    rows = sampler.flatness(warmup, window)
    ok = bool(rows) and all(flat for *_, flat in rows)
    growth = sampler.growth_per_job(warmup)
    lines = [
        "## Soak: resources over time",
        "",
        f"**Resources: {'FLAT' if ok else 'NOT FLAT'}** — warm-up {warmup:.0f} s, windows of {window:.0f} s; "
        f"database growth per job after warm-up: "
        + (f"{growth:.0f} bytes" if growth is not None else "n/a"),
        "",
        "| process | metric | after warm-up (median) | last window (median) | within 10% |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {p} | {m} | {a:.1f} | {b:.1f} | {'yes' if f else '**no**'} |" for p, m, a, b, f in rows]
    times = sorted({float(r["t"]) for r in sampler.rows})
    step = max(1, len(times) // 12)
    marks = times[::step]
    names = sorted({str(r["process"]) for r in sampler.rows})
    for metric in METRICS:
        lines += ["", f"{metric} over time (s):", "", "| process | " + " | ".join(f"{t:.0f}" for t in marks) + " |",
                  "|---|" + "---|" * len(marks)]
        for name in names:
            by_t = {float(r["t"]): float(r[metric]) for r in sampler.rows if r["process"] == name}
            lines.append(f"| {name} | " + " | ".join(f"{by_t[t]:.0f}" if t in by_t else "" for t in marks) + " |")
    db = sampler.db_rows[::step]
    lines += ["", "database size over time:", "", "| t (s) | size (MiB) | succeeded jobs |", "|---|---|---|"]
    lines += [f"| {t:.0f} | {size / 2**20:.1f} | {jobs} |" for t, size, jobs in db]
    return "\n".join(lines) + "\n", ok
