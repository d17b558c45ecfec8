"""The harness's webhook receiver: fails at random, deduplicates by webhook-id, counts effects.

It listens on 127.0.0.1, is registered for `job.succeeded` through the API, and answers each
request by a seeded draw: 500, 503 with Retry-After, too slow (past the dispatcher's timeout,
after applying the effect, as a real receiver might), or 204. Every request is verified with
the reference `standardwebhooks` library; a verified id seen before is not applied again.
The audit then wants exactly one effect per succeeded job, and no other.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import standardwebhooks
from aiohttp import web

from harness.fleet import free_port

# What the dispatcher processes get (the API checks endpoint URLs with the same policy).
ENV = {
    "VIDJOBS_WEBHOOK_ALLOW_HTTP": "true",
    "VIDJOBS_WEBHOOK_ALLOW_PRIVATE": "true",
    "VIDJOBS_WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,1,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2",
    "VIDJOBS_WEBHOOK_TIMEOUT_SECONDS": "2",
    "VIDJOBS_WEBHOOK_POLL_SECONDS": "0.5",
}
TIMEOUT_SECONDS = 2.0


@dataclass
class Receiver:
    seed: int
    port: int = field(default_factory=free_port)
    secret: str = ""
    effects: Counter[str] = field(default_factory=Counter)  # job key -> times applied
    seen: set[str] = field(default_factory=set)
    requests: int = 0
    duplicates: int = 0
    unverified: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    hook_url: str = ""  # where the dispatcher is told to send (the `hook` proxy), if not url
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        draw = self.rng.random()
        if draw < 0.25:
            self.replies["500"] += 1
            return web.Response(status=500)
        if draw < 0.30:
            self.replies["503"] += 1
            return web.Response(status=503, headers={"Retry-After": "1"})
        try:
            event: Any = standardwebhooks.Webhook(self.secret).verify(body, dict(request.headers))
        except standardwebhooks.WebhookVerificationError:
            self.unverified += 1
            return web.Response(status=400)
        msg_id = request.headers["webhook-id"]
        if msg_id in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(msg_id)
            if event["type"] == "job.succeeded":
                self.effects[event["data"]["key"]] += 1
        if draw < 0.33:  # the effect is applied, but the answer comes too late
            self.replies["slow"] += 1
            await asyncio.sleep(TIMEOUT_SECONDS + 1)
        self.replies["204"] += 1
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def register(self, api_url: str, token: str) -> None:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
            r = await client.post(
                "/v1/webhooks",
                json={"url": self.hook_url or self.url, "events": ["job.succeeded"], "description": "harness"},
                headers={"Authorization": f"Bearer {token}"},
            )
        if r.status_code != 201:
            raise RuntimeError(f"registering the harness receiver failed: {r.text}")
        self.secret = r.json()["secret"]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def summary(self) -> str:
        return json.dumps(
            {
                "requests": self.requests,
                "replies": dict(self.replies),
                "duplicates_ignored": self.duplicates,
                "unverified": self.unverified,
            }
        )
