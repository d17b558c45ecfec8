"""Network, storage and webhook faults, through toxiproxy and the workers' scratch tmpfs.

Each function injects one fault, holds it, and lifts it; it returns a note for the report.
The proxies are per process (see harness.fleet), so "the whole fleet" and "one process" are
both possible:

- db_latency: every process's PostgreSQL link gets latency with jitter, both ways;
- s3_bandwidth: every process's S3 link is limited to a few KB/s;
- reset_connections: every PostgreSQL, Kafka and S3 connection is reset (TCP RST), and so
  is each new one for a moment;
- partition_worker_db: one worker's PostgreSQL link drops everything for longer than a
  lease, then the stalled connections are closed (TCP gave up); the worker keeps running
  its jobs meanwhile, and its finish must then be fenced off;
- partition_relay_kafka: the active relay is cut off from Kafka;
- s3_outage: S3 refuses connections (every proxy disabled);
- webhook_down / webhook_slow: the receiver refuses connections / answers past the
  dispatcher's timeout;
- scratch_full: one worker's scratch file system is filled to the last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from harness.fleet import Fleet
from harness.toxiproxy import Toxiproxy

HOLD_SECONDS = 5.0


def _tp(fleet: Fleet) -> Toxiproxy:
    assert fleet.toxiproxy is not None, "network faults need the fleet's toxiproxy"
    return fleet.toxiproxy


async def _with_toxic(
    fleet: Fleet, proxies: list[str], kind: str, seconds: float, streams: tuple[str, ...], **attrs: Any
) -> None:
    tp = _tp(fleet)
    added: list[tuple[str, str]] = []
    try:
        for proxy in proxies:
            for stream in streams:
                added.append((proxy, await asyncio.to_thread(tp.add_toxic, proxy, kind, stream, **attrs)))
        await asyncio.sleep(seconds)
    finally:
        for proxy, toxic in added:
            await asyncio.to_thread(tp.remove_toxic, proxy, toxic)


async def db_latency(fleet: Fleet) -> str:
    proxies = fleet.proxies_of("pg")
    await _with_toxic(fleet, proxies, "latency", HOLD_SECONDS, ("upstream", "downstream"), latency=60, jitter=50)
    return f"{len(proxies)} links, 60±50 ms each way, {HOLD_SECONDS:.0f} s"


async def s3_bandwidth(fleet: Fleet) -> str:
    proxies = fleet.proxies_of("s3")
    await _with_toxic(fleet, proxies, "bandwidth", HOLD_SECONDS, ("upstream", "downstream"), rate=16)
    return f"{len(proxies)} links at 16 KB/s, {HOLD_SECONDS:.0f} s"


async def reset_connections(fleet: Fleet) -> str:
    proxies = fleet.proxies_of("pg") + fleet.proxies_of("kafka") + fleet.proxies_of("s3")
    await _with_toxic(fleet, proxies, "reset_peer", 0.5, ("downstream",), timeout=0)
    return f"{len(proxies)} links reset for 0.5 s"


async def partition_worker_db(fleet: Fleet, target: int) -> str:
    proc = fleet.by_role("worker")[target]
    seconds = fleet.lease_seconds * 2 + 1
    # timeout: nothing gets through, and each connection is closed once `seconds` passed.
    await _with_toxic(
        fleet, [proc.proxies["pg"]], "timeout", seconds, ("upstream", "downstream"), timeout=int(seconds * 1000)
    )
    return f"{proc.name} blackholed from PostgreSQL {seconds:.0f} s (lease {fleet.lease_seconds:.0f} s)"


async def partition_relay_kafka(fleet: Fleet) -> str:
    proc = fleet.active_relay() or fleet.by_role("relay")[0]
    seconds = HOLD_SECONDS + 3
    await _with_toxic(
        fleet, [proc.proxies["kafka"]], "timeout", seconds, ("upstream", "downstream"), timeout=int(seconds * 1000)
    )
    return f"{proc.name} cut off from Kafka {seconds:.0f} s"


async def _disabled(fleet: Fleet, proxies: list[str], seconds: float) -> None:
    tp = _tp(fleet)
    try:
        for proxy in proxies:
            await asyncio.to_thread(tp.set_enabled, proxy, False)
        await asyncio.sleep(seconds)
    finally:
        for proxy in proxies:
            await asyncio.to_thread(tp.set_enabled, proxy, True)


async def s3_outage(fleet: Fleet) -> str:
    proxies = fleet.proxies_of("s3")
    await _disabled(fleet, proxies, HOLD_SECONDS)
    return f"S3 refused to {len(proxies)} processes, {HOLD_SECONDS:.0f} s"


async def webhook_down(fleet: Fleet) -> str:
    await _disabled(fleet, ["hook"], HOLD_SECONDS)
    return f"receiver refusing connections {HOLD_SECONDS:.0f} s"


async def webhook_slow(fleet: Fleet) -> str:
    await _with_toxic(fleet, ["hook"], "latency", HOLD_SECONDS, ("downstream",), latency=3000)
    return f"receiver answering after 3 s (dispatcher timeout 2 s), {HOLD_SECONDS:.0f} s"


def _fill(path: Path) -> int:
    """Write until the file system is full; returns the bytes written."""
    written = 0
    block = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(block)
            except OSError:  # ENOSPC: the point
                break
        with contextlib.suppress(OSError):
            while True:
                written += f.write(b"\0" * 4096)
    return written


async def scratch_full(fleet: Fleet, target: int) -> str:
    proc = fleet.by_role("worker")[target]
    mount = fleet.scratch_tmpfs.get(proc.name)
    if mount is None:
        return f"{proc.name}: no tmpfs scratch (not root?), nothing filled"
    filler = mount / "harness-filler"
    try:
        written = await asyncio.to_thread(_fill, filler)
        await asyncio.sleep(HOLD_SECONDS)
    finally:
        filler.unlink(missing_ok=True)
    return f"{proc.name} scratch tmpfs full ({written >> 20} MiB filler) {HOLD_SECONDS:.0f} s"
