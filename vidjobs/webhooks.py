"""Receiving vidjobs webhooks: verify the Standard Webhooks signature, drop duplicates.

Deliveries are at least once: the same event can arrive again (a retry after a lost
answer, a replay), always with the same `webhook-id`. `Receiver.receive` verifies the
signature and timestamp with the reference `standardwebhooks` library and returns None for
an id it has seen, so the receiver's effect happens once. Any web framework can call it:

    receiver = Receiver(os.environ["VIDJOBS_WEBHOOK_SECRET"])

    @app.post("/hooks/vidjobs")
    async def hook(request: Request) -> Response:
        try:
            event = receiver.receive(await request.body(), request.headers)
        except WebhookVerificationError:
            return Response(status_code=400)
        if event is not None:
            handle(event)  # first delivery of this event id
        return Response(status_code=204)

Keep the seen ids in your own database (a `Seen` with an `add` that inserts the id and
says whether it was new) to deduplicate across processes and restarts.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from standardwebhooks import Webhook

from vidjobs.errors import VidjobsError
from vidjobs.models import Job


class WebhookVerificationError(VidjobsError):
    """The delivery is not from the endpoint's secret, or too old or too new to accept."""


class Seen(Protocol):
    def add(self, event_id: str) -> bool:
        """Record `event_id`; True when it was not recorded before."""
        ...


class MemorySeen:
    """The last `size` event ids, in this process (tests and single-process receivers)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


@dataclass(frozen=True)
class WebhookEvent:
    id: str  # the `webhook-id`: the same on every retry and replay of this event
    type: str  # job.succeeded, job.failed, ...
    timestamp: dt.datetime | None
    data: dict[str, Any]

    @property
    def job(self) -> Job | None:
        """The job's public view, for job events."""
        return Job.from_wire(self.data) if "key" in self.data and "status" in self.data else None


def _time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class Receiver:
    def __init__(self, secret: str, *, seen: Seen | None = None) -> None:
        try:
            self._webhook = Webhook(secret)
        except Exception as exc:
            raise ValueError(f"not a webhook secret (whsec_...): {exc}") from None
        self.seen: Seen = seen if seen is not None else MemorySeen()

    def verify(self, body: bytes | str, headers: Mapping[str, str]) -> WebhookEvent:
        """The delivered event, if the signature matches and the timestamp is within 5 min."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            payload = self._webhook.verify(body, lowered)
        except Exception as exc:  # the library raises ValueError too on crafted headers
            raise WebhookVerificationError(
                f"webhook not verified: {exc}", code="webhook_unverified"
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise WebhookVerificationError(
                "webhook body is not a vidjobs event", code="webhook_unverified"
            )
        data = payload.get("data")
        return WebhookEvent(
            lowered["webhook-id"], payload["type"], _time(payload.get("timestamp")),
            data if isinstance(data, dict) else {},
        )

    def receive(self, body: bytes | str, headers: Mapping[str, str]) -> WebhookEvent | None:
        """`verify`, then None when this event id was received before."""
        event = self.verify(body, headers)
        return event if self.seen.add(event.id) else None
