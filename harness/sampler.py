"""Resource samples of every fleet process over time, for the soak report.

Every `period` seconds: each process's RSS (VmRSS of its main pid), open file descriptors,
and two kinds of socket among them, read from /proc/<pid>/fd and /proc/net/tcp{,6}: its
database connections (to its own PostgreSQL proxy) and the connections its clients opened
to it (the API's from the load client), so a step in the FDs shows whose it is; and the
database's size with the count of succeeded jobs, for the growth per job. `flatness`
compares the median of the window after warm-up with the median of the last window, per
process and metric.
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

METRICS = ("rss_mib", "fds", "db_conns", "client_conns")


def _tcp_sockets() -> dict[str, tuple[str, int, int]]:
    """socket inode -> (state, local port, remote port), for the TCP sockets on this machine."""
    found: dict[str, tuple[str, int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9:
                local, remote = (int(a.rsplit(":", 1)[1], 16) for a in parts[1:3])
                found[parts[9]] = (parts[3], local, remote)
    return found


ESTABLISHED, LISTEN = "01", "0A"


def sample_process(
    pid: int, db_port: int | None, tcp: dict[str, tuple[str, int, int]]
) -> dict[str, float]:
    """RSS, open FDs, and two kinds of socket among them: connections to the database and
    connections that clients opened to a port this process listens on (set by the clients)."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds = 0
    sockets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in tcp:
            sockets.append(tcp[target[8:-1]])
    listening = {local for state, local, _ in sockets if state == LISTEN}
    established = [(local, remote) for state, local, remote in sockets if state == ESTABLISHED]
    conns = sum(1 for _, remote in established if db_port and remote == db_port)
    clients = sum(1 for local, _ in established if local in listening)
    return {"rss_mib": rss, "fds": fds, "db_conns": conns, "client_conns": clients}


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
            tcp = await asyncio.to_thread(_tcp_sockets)
            for proc in self.fleet.procs:
                if not proc.alive():
                    continue
                port = self.fleet.proxy_ports.get(proc.proxies.get("pg", ""))
                try:
                    values = await asyncio.to_thread(sample_process, proc.pid, port, tcp)
                except OSError:  # it just died (a fault)
                    continue
                self.rows.append(
                    {"t": t, "process": proc.name, "incarnation": proc.incarnation, **values}
                )
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
