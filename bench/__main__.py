"""The benchmark suite: one command, one table, one JSON file.

    .venv/bin/python -m bench [--jobs 5000] [--quick] [--skip ffmpeg,relay,...]

Runs, in one process and one run: claim-and-complete throughput against pgqueuer and
procrastinate (`bench.claims`), the pgbench ceiling for our own claim/finish statements
(`bench.pgbench`), submissions/s unique vs duplicate (`bench.submit`), embedded dispatch
latency (submit -> claimed: `bench.dispatch` at 10 jobs/s, `vidjobs up` and Kafka), the relay
(`bench.relay`), the ffmpeg overhead (`bench.ffmpeg_overhead`), chunked encoding's scaling
over pinned workers (`bench.chunked`) and, when
VIDJOBS_TEST_S3_ENDPOINT is set, 1 GiB through S3 against boto3 (`bench.storage`). Writes
bench/results/latest.json and bench/results/latest.md. PostgreSQL comes from --pg or
VIDJOBS_TEST_DATABASE_URL; throwaway databases are created on it and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _run_module_main(
    module: str, argv: list[str], json_flag: bool = True
) -> tuple[str, dict[str, Any] | None]:
    """Run another bench module's CLI in a subprocess; return its output (and its JSON)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_json = Path(f.name)
    try:
        extra = ["--json", str(out_json)] if json_flag else []
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv, *extra],
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        text = proc.stdout + (proc.stderr[-2000:] if proc.returncode else "")
        data = json.loads(out_json.read_text()) if out_json.stat().st_size else None
        return text, data
    finally:
        out_json.unlink(missing_ok=True)


def check_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, against this run's figures (best over worker-process counts)."""
    goals: list[dict[str, Any]] = []
    rates = results.get("claims", {}).get("jobs_per_s", {})
    if rates:
        ours = rates["vidjobs"]
        pgq = {n: r for n, r in rates.items() if n.startswith("pgqueuer")}
        best_pgq = max(max(r.values()) for r in pgq.values())
        # Per process count, against the best pgqueuer configuration at that count.
        worst = min(ours[p] / max(r[p] for r in pgq.values()) for p in ours)
        goals.append(
            {"goal": "claim-and-complete >= 1.2x pgqueuer (best vs best, medians)",
             "measured": f"{max(ours.values()) / best_pgq:.2f}x",
             "met": max(ours.values()) >= 1.2 * best_pgq}
        )  # fmt: skip
        goals.append(
            {"goal": "claim-and-complete >= pgqueuer (at every process count)",
             "measured": f"{worst:.2f}x at worst", "met": worst >= 1.0}
        )  # fmt: skip
        proc = max(rates["procrastinate"].values())
        goals.append(
            {"goal": "claim-and-complete >= 3x procrastinate",
             "measured": f"{max(ours.values()) / proc:.2f}x",
             "met": max(ours.values()) >= 3 * proc}
        )  # fmt: skip
    sub = (results.get("submit") or {}).get("postgres")
    if sub:
        ratio = sub["unique_per_s"] / sub["duplicate_per_s"]
        goals.append(
            {"goal": "duplicate costs <= 0.5 of a new submission (PostgreSQL)",
             "measured": f"{ratio:.2f}", "met": ratio <= 0.5}
        )  # fmt: skip
    for path, goal_ms in (("embedded", 5.0), ("kafka", 20.0)):
        runs = results.get("dispatch", {}).get(path)
        if runs:
            p50 = statistics.median(r["p50_ms"] for r in runs)
            where = "`vidjobs up`, through its API" if path == "embedded" else "through Kafka"
            goals.append(
                {"goal": f"dispatch p50 <= {goal_ms:g} ms ({where}; medians of rounds)",
                 "measured": f"{p50:.1f} ms", "met": p50 <= goal_ms}
            )  # fmt: skip
    http = (results.get("submit") or {}).get("http_vs_service") or {}
    if http:
        best = max(http, key=lambda name: http[name]["unique"])
        goals.append(
            {"goal": "HTTP unique submissions >= 0.8 of the service path (best of --workers 1, 2)",
             "measured": f"{http[best]['unique']:.2f} ({best})", "met": http[best]["unique"] >= 0.8}
        )  # fmt: skip
    for name, row in ((results.get("submit") or {}).get("http") or {}).items():
        ratio = row["batch_unique_per_s"] / row["unique_per_s"]
        goals.append(
            {"goal": f"POST /v1/jobs/batch >= 5x single requests ({name})",
             "measured": f"{ratio:.2f}x", "met": ratio >= 5}
        )  # fmt: skip
    overhead = results.get("ffmpeg_overhead") or {}
    for case, row in overhead.items():
        if not isinstance(row, dict) or "added_ms" not in row:
            continue
        if case.startswith("trim 2-8 s + scale"):
            goals.append(
                {"goal": f"encode ({case}) <= 1.05x ffmpeg alone", "measured": f"{row['ratio']:.2f}x",
                 "met": row["ratio"] <= 1.05}
            )  # fmt: skip
        else:
            goals.append(
                {"goal": f"added time per short job ({case}) <= 50 ms",
                 "measured": f"{row['added_ms']:.0f} ms", "met": row["added_ms"] <= 50}
            )  # fmt: skip
    for way, ratio in ((results.get("storage") or {}).get("ratios") or {}).items():
        if "boto3" in way:
            goals.append(
                {"goal": f"S3 1 GiB {way.split()[-1]} >= 0.8 of boto3's transfer manager",
                 "measured": f"{ratio:.2f}", "met": ratio >= 0.8}
            )  # fmt: skip
    two = (results.get("chunked") or {}).get("chunked, 2 workers")
    if two:
        goals.append(
            {"goal": "chunked encoding's parallel efficiency >= 0.9 (2 pinned workers)",
             "measured": f"{two['efficiency']:.2f}", "met": two["efficiency"] >= 0.9}
        )  # fmt: skip
    frac = results.get("ceiling", {}).get("vidjobs_best_fraction")
    if frac is not None:
        goals.append(
            {"goal": "claim path >= 0.5 of the pgbench ceiling", "measured": f"{frac:.2f}",
             "met": frac >= 0.5}
        )  # fmt: skip
    return goals


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per claim run")
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=20, help="cap on jobs in flight")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved claim rounds")
    parser.add_argument(
        "--skip",
        default="",
        help="comma list: claims,ceiling,submit,dispatch,relay,ffmpeg,chunked,storage",
    )
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    from bench import claims as claims_bench
    from bench import pgbench as ceiling_bench

    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "skipped": {},
    }
    lines: list[str] = []
    proc_counts = [int(p) for p in args.procs.split(",")]

    if not args.pg:
        results["skipped"]["claims"] = results["skipped"]["ceiling"] = "no PostgreSQL URL"
    if args.pg and "claims" not in skip:
        print("claim-and-complete throughput (vidjobs, pgqueuer, procrastinate) ...", flush=True)
        c = await claims_bench.run_suite(
            args.pg, args.jobs, proc_counts, args.concurrency, rounds=args.rounds
        )
        results["claims"] = c
        lines += ["```", claims_bench.table(c), "```"]
    if args.pg and "ceiling" not in skip:
        print("pgbench ceiling for our claim + finish statements ...", flush=True)
        ceil: dict[str, float] = {}
        # One client per worker process (a worker's finish-and-claim chain), and more.
        for clients in sorted({1, 2, 4, 8, *proc_counts}):
            ceil[str(clients)] = await ceiling_bench.ceiling(
                args.pg, args.jobs, clients, args.concurrency
            )
            print(f"  pgbench {clients:>3} clients: {ceil[str(clients)]:8.0f} jobs/s", flush=True)
        best = max(ceil.values())
        results["ceiling"] = {"jobs_per_s_by_clients": ceil, "best": best}
        lines.append(
            f"pgbench ceiling (the worker's finish-and-claim statement, groups of "
            f"{args.concurrency}, prepared): "
            + ", ".join(f"{k} clients {v:.0f}/s" for k, v in ceil.items())
        )
        if "claims" in results:
            ours = max(results["claims"]["jobs_per_s"]["vidjobs"].values())
            results["ceiling"]["vidjobs_best_fraction"] = ours / best
            lines.append(f"vidjobs best / ceiling best: {ours / best:.2f}")
    if "submit" not in skip:
        print("submissions/s, unique vs duplicate ...", flush=True)
        argv = ["--rounds", "3", "--serve-workers", "1,2"] + (["--pg", args.pg] if args.pg else [])
        text, data = _run_module_main("bench.submit", argv)
        results["submit"] = data
        lines += ["```", text.strip(), "```"]
    if "dispatch" not in skip:
        # At a light load: latency, not the throughput at which `vidjobs up` saturates.
        print("bench.dispatch ...", flush=True)
        argv = ["--jobs", "200", "--rate", "10", "--rounds", "3"]
        text, data = _run_module_main("bench.dispatch", argv)
        results["dispatch"] = data
        lines += ["```", text.strip(), "```"]
    if "relay" not in skip:
        print("bench.relay ...", flush=True)
        text, _ = _run_module_main("bench.relay", [], json_flag=False)
        results["relay"] = {"output": text}
        lines += ["```", text.strip(), "```"]
    if "ffmpeg" not in skip:
        print("ffmpeg orchestration overhead ...", flush=True)
        text, data = _run_module_main("bench.ffmpeg_overhead", ["--runs", "5"])
        results["ffmpeg_overhead"] = data if data is not None else {"output": text}
        lines += ["```", text.strip(), "```"]
    if "chunked" not in skip:
        print("bench.chunked (60 s 720p over 1, 2 and 4 pinned workers) ...", flush=True)
        text, data = _run_module_main("bench.chunked", ["--rounds", "3"])
        results["chunked"] = data
        lines += ["```", text.strip(), "```"]
    if "storage" not in skip and os.environ.get("VIDJOBS_TEST_S3_ENDPOINT"):
        print("bench.storage (1 GiB through S3) ...", flush=True)
        text, data = _run_module_main("bench.storage", ["--only", "transfer", "--rounds", "3"])
        results["storage"] = data
        lines += ["```", text.strip(), "```"]
    elif "storage" not in skip:
        results["skipped"]["storage"] = "no VIDJOBS_TEST_S3_ENDPOINT (scripts/services.py s3-start)"

    goals = check_goals(results)
    results["goals"] = goals
    lines += ["", "goals (this run):"] + [
        f"- {g['goal']}: {g['measured']} -> {'met' if g['met'] else 'NOT met'}" for g in goals
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print()
    print("\n".join(line for line in lines if line != "```"))
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.md'}")


if __name__ == "__main__":
    asyncio.run(main())
