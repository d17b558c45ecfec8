"""A seeded fault schedule and its injector, with the time each fault took to recover from.

Process kinds: kill -9 of a worker; SIGSTOP of a worker past its lease then SIGCONT (a
zombie); kill -9 of the active relay, the ledger, the reaper and the webhook dispatcher;
PostgreSQL restarted; the Kafka broker restarted. Killed processes are restarted after a
second, as a supervisor would. Network, storage and webhook kinds are in harness.netfaults
(through toxiproxy). Recovery = time from the fault to the next job completion.

Faults come one at a time: each waits for its planned time and then until the fleet has
recovered from the one before (a job completed since it, and every worker process it
restarted is serving again), so a fault's recovery is its own. Without that wait, faults
overdue after a long injection (a Kafka restart takes 30-50 s on a loaded machine) fired
back to back: four worker kills in 4 s left no worker serving, and the Kafka restart just
after them was billed the 15 s their replacements took to start.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from harness import netfaults
from harness.fleet import Fleet

PROCESS_KINDS = (
    "kill_worker",
    "zombie_worker",
    "kill_relay",
    "restart_postgres",
    "restart_kafka",
    "kill_ledger",
    "kill_reaper",
    "kill_webhooks",
)
NETWORK_KINDS = (
    "db_latency",
    "reset_connections",
    "partition_worker_db",
    "partition_relay_kafka",
    "webhook_down",
    "webhook_slow",
)
S3_KINDS = ("s3_bandwidth", "s3_outage", "scratch_full")  # need --storage s3
KINDS = PROCESS_KINDS + NETWORK_KINDS + S3_KINDS
SETTLE_SECONDS = 60.0  # the longest a fault waits for the fleet to recover from the last


def kinds_for(storage: str) -> tuple[str, ...]:
    return KINDS if storage == "s3" else PROCESS_KINDS + NETWORK_KINDS


@dataclass
class Fault:
    at: float  # seconds after the load starts
    kind: str
    target: int  # which worker/relay (index), where it applies
    started: float = 0.0
    began: float | None = None  # seconds after the load starts, when it really began
    waited: float = 0.0  # seconds it waited for the fleet to recover from the fault before
    recovered_after: float | None = None
    note: str = ""


def schedule(
    seed: int, seconds: float, interval: float, workers: int, kinds_: tuple[str, ...] = PROCESS_KINDS
) -> list[Fault]:
    """Every kind at least once, then worker kills (the most common real fault) and more.

    Faults fall inside the load window, leaving its last ~10 s for recovery to be seen.
    A fault that lasts (a partition) delays the next ones; the report gives when each began.
    """
    rng = random.Random(seed)
    kinds = list(kinds_)
    rng.shuffle(kinds)
    count = max(len(kinds), int((seconds - 10) // interval))
    while len(kinds) < count:
        kinds.append("kill_worker" if rng.random() < 0.3 else rng.choice(kinds_))
    faults = []
    for n, kind in enumerate(kinds):
        at = 3.0 + n * interval + rng.uniform(0, interval / 3)
        faults.append(Fault(at=round(at, 2), kind=kind, target=rng.randrange(workers)))
    return faults


@dataclass
class Injector:
    fleet: Fleet
    faults: list[Fault]
    completions: Callable[[], Awaitable[int]]  # succeeded jobs so far
    log: list[str] = field(default_factory=list)
    measuring: list[asyncio.Task[None]] = field(default_factory=list)
    required: int = 0  # the first faults (one of each kind) happen even after the load

    async def run(self, start: float, stop: asyncio.Event) -> None:
        for n, fault in enumerate(self.faults):
            if stop.is_set() and n >= self.required:  # the load is over, every kind was seen
                return
            delay = start + fault.at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            settling = time.monotonic()
            await self._settle(self.faults[n - 1] if n else None)
            fault.waited = time.monotonic() - settling
            before = await self._completions()
            fault.started = time.monotonic()
            fault.began = fault.started - start
            # Measure from the moment of the fault, while the injection (restarts) goes on.
            self.measuring.append(asyncio.create_task(self._measure(fault, before)))
            try:
                await self._inject(fault)
            except Exception as exc:  # e.g. a restart that timed out on a loaded machine
                fault.note = f"{fault.note} injection failed: {exc!s:.200}".strip()
                print(f"fault {fault.kind} failed: {exc}", flush=True)
            self.log.append(f"t={fault.started - start:6.1f}s {fault.kind} {fault.note}")

    async def _settle(self, previous: Fault | None) -> None:
        """Until the previous fault has recovered and every worker serves (at most SETTLE_SECONDS)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            if (previous is None or previous.recovered_after is not None) and self.fleet.workers_serving():
                return
            await asyncio.sleep(0.1)
        print(f"fault after {previous.kind if previous else '-'}: the fleet had not recovered "
              f"within {SETTLE_SECONDS:.0f} s; injecting anyway", flush=True)

    async def _completions(self) -> int:
        for _ in range(100):
            try:
                return await self.completions()
            except Exception:  # the database may be the thing we just restarted
                await asyncio.sleep(0.1)
        return -1

    async def _measure(self, fault: Fault, before: int) -> None:
        deadline = fault.started + 120
        while time.monotonic() < deadline:
            now = await self._completions()
            if now > before:
                fault.recovered_after = time.monotonic() - fault.started
                return
            await asyncio.sleep(0.05)

    async def _inject(self, fault: Fault) -> None:
        f = self.fleet
        if fault.kind == "kill_worker":
            proc = f.by_role("worker")[fault.target]
            await asyncio.to_thread(f.kill, proc)
            fault.note = f"{proc.name} pid {proc.pid}"
            await asyncio.sleep(1.0)
            f.start(proc)
        elif fault.kind == "zombie_worker":
            proc = f.by_role("worker")[fault.target]
            f.pause(proc)
            fault.note = (
                f"{proc.name} paused {f.lease_seconds + 2:.0f}s (lease {f.lease_seconds:.0f}s)"
            )
            await asyncio.sleep(f.lease_seconds + 2)
            f.resume(proc)
        elif fault.kind == "kill_relay":
            proc = f.active_relay() or f.by_role("relay")[0]
            fault.note = f"{proc.name} (active: {f.active_relay() is proc})"
            await asyncio.to_thread(f.kill, proc)
            await asyncio.sleep(1.0)
            f.start(proc)
        elif fault.kind == "kill_ledger":
            proc = f.by_role("ledger")[0]
            await asyncio.to_thread(f.kill, proc)
            fault.note = proc.name
            await asyncio.sleep(1.0)
            f.start(proc)
        elif fault.kind == "kill_reaper":
            proc = f.by_role("reaper")[0]
            await asyncio.to_thread(f.kill, proc)
            fault.note = proc.name
            await asyncio.sleep(1.0)
            f.start(proc)
        elif fault.kind == "kill_webhooks":
            proc = f.by_role("webhooks")[0]
            await asyncio.to_thread(f.kill, proc)
            fault.note = proc.name
            await asyncio.sleep(1.0)
            f.start(proc)
        elif fault.kind == "restart_postgres":
            await asyncio.to_thread(f.restart_postgres)
        elif fault.kind == "restart_kafka":
            await asyncio.to_thread(f.restart_kafka)
        elif fault.kind in ("partition_worker_db", "scratch_full"):
            fault.note = await getattr(netfaults, fault.kind)(f, fault.target)
        elif fault.kind in NETWORK_KINDS + S3_KINDS:
            fault.note = await getattr(netfaults, fault.kind)(f)
        else:
            raise ValueError(fault.kind)
