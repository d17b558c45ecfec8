"""Resource samples of every fleet process over time, for the soak report.

Every `period` seconds: each process's RSS (VmRSS of its main pid), open file descriptors,
and database connections (its sockets connected to its own PostgreSQL proxy, read from
/proc/<pid>/fd and /proc/net/tcp{,6}); and the database's size with the count of succeeded
jobs, for the growth per job. `flatness` compares the median of the window after warm-up
with the median of the last window, per process and metric.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.fleet import Fleet

METRICS = ("rss_mib", "fds", "db_conns")


def _tcp_remote_ports() -> dict[str, int]:
    """socket inode -> remote port, for established TCP sockets on this machine."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "01":  # ESTABLISHED
                found[parts[9]] = int(parts[2].rsplit(":", 1)[1], 16)
    return found


def sample_process(pid: int, db_port: int | None, remote: dict[str, int]) -> dict[str, float]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds = conns = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if db_port and target.startswith("socket:[") and remote.get(target[8:-1]) == db_port:
            conns += 1
    return {"rss_mib": rss, "fds": fds, "db_conns": conns}


@dataclass
class Sampler:
    fleet: Fleet
    db_stats: Callable[[], Awaitable[tuple[int, int]]]  # (database bytes, succeeded jobs)
    period: float = 5.0
    rows: list[dict[str, float | str]] = field(default_factory=list)  # t, process, metrics
    db_rows: list[tuple[float, int, int]] = field(default_factory=list)  # t, bytes, jobs

    async def run(self, start: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.monotonic() - start
            remote = await asyncio.to_thread(_tcp_remote_ports)
            for proc in self.fleet.procs:
                if not proc.alive():
                    continue
                port = self.fleet.proxy_ports.get(proc.proxies.get("pg", ""))
                try:
                    values = await asyncio.to_thread(sample_process, proc.pid, port, remote)
                except OSError:  # it just died (a fault)
                    continue
                self.rows.append({"t": t, "process": proc.name, "incarnation": proc.incarnation, **values})
            try:
                size, jobs = await self.db_stats()
                self.db_rows.append((t, size, jobs))
            except Exception as exc:  # the database may be restarting
                print(f"sampler: database stats failed: {exc}", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), self.period)
            except TimeoutError:
                pass

    def series(self, process: str, metric: str) -> list[tuple[float, float]]:
        return [(float(r["t"]), float(r[metric])) for r in self.rows if r["process"] == process]

    def flatness(self, warmup: float, window: float) -> list[tuple[str, str, float, float, bool]]:
        """(process, metric, median after warm-up, median of the last window, within 10%);
        counts (fds, connections) may also move by 1."""
        out = []
        end = max((float(r["t"]) for r in self.rows), default=0.0)
        for name in [p.name for p in self.fleet.procs]:
            for metric in METRICS:
                pts = self.series(name, metric)
                first = [v for t, v in pts if warmup <= t < warmup + window]
                last = [v for t, v in pts if t >= end - window]
                if not first or not last:
                    continue
                a, b = statistics.median(first), statistics.median(last)
                slack = max(0.10 * a, 0.0 if metric == "rss_mib" else 1.0)
                out.append((name, metric, a, b, b <= a + slack))
        return out

    def growth_per_job(self, warmup: float) -> float | None:
        after = [r for r in self.db_rows if r[0] >= warmup]
        if len(after) < 2 or after[-1][2] == after[0][2]:
            return None
        return (after[-1][1] - after[0][1]) / (after[-1][2] - after[0][2])
