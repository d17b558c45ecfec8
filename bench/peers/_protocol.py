"""The start/stop handshake every benchmark worker process speaks with `bench.claims`.

A worker connects and sets up, prints `ready`, waits for `go` on stdin, works, and stops
when stdin closes. Start-up (imports, connections) is therefore never timed. Shared by the
peer drivers (run in `.bench-venv`) and by the vidjobs worker (run in `.venv`); it
imports nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import sys


async def _readline() -> str:
    return await asyncio.to_thread(sys.stdin.readline)


async def ready_then_go() -> None:
    """Announce readiness and wait for the starting signal."""
    print("ready", flush=True)
    line = await _readline()
    if line.strip() != "go":
        raise SystemExit(0)  # the orchestrator gave up before starting


async def until_stdin_closes(stop: asyncio.Event) -> None:
    """Set `stop` when the orchestrator closes our stdin (or writes `stop`)."""
    while True:
        line = await _readline()
        if not line or line.strip() == "stop":
            stop.set()
            return
