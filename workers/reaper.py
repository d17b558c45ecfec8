"""The reaper: expired leases back to pending, and scratch files of dead workers removed."""

from __future__ import annotations

import asyncio
import logging

from jobs.blobstore import BlobStore
from jobs.claims import ClaimService
from workers.wakeup import Wakeup

log = logging.getLogger("vidjobs.reaper")


class Reaper:
    def __init__(
        self,
        claims: ClaimService,
        blobs: BlobStore | None = None,
        *,
        interval: float = 1.0,
        temp_max_age: float = 6 * 3600,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.claims = claims
        self.blobs = blobs
        self.interval = interval
        self.temp_max_age = temp_max_age
        self.wakeup = wakeup
        self.rescued = 0

    async def tick(self) -> int:
        """One pass; returns how many jobs it rescued."""
        rescued = await self.claims.rescue_expired()
        self.rescued += len(rescued)
        for job in rescued:
            log.info("rescued %s (attempt %s): now %s", job.key, job.attempts, job.status)
        if rescued and self.wakeup is not None:
            self.wakeup.notify()
        if self.blobs is not None:
            await asyncio.to_thread(self.blobs.clean_temp, self.temp_max_age)
        return len(rescued)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                log.warning("reaper pass failed, will retry: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
