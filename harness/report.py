"""The harness report, in markdown: figures, the audit's checks, every fault and its recovery."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from harness.audit import Audit
from harness.faults import Fault
from harness.load import LoadResult


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
        f"| **lost** | **{audit.figures.get('lost')}** |",
        f"| **double effects** | **{audit.figures.get('double_effects')}** |",
        f"| requests that got no answer | {len(load.gave_up)} |",
        f"| faults injected | {sum(kinds.values())} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) |",
        f"| fault to progress resuming | {_secs(recovered)} |",
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
        "| at (s) | kind | target | recovered after (s) |",
        "|---|---|---|---|",
    ]
    for f in faults:
        if f.started:
            rec = f"{f.recovered_after:.2f}" if f.recovered_after is not None else "not measured"
            lines.append(f"| {f.at:.1f} | {f.kind} | {f.note} | {rec} |")
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
