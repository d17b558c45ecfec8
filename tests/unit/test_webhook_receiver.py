"""The client's webhook receiver against deliveries signed by the reference library."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from standardwebhooks import Webhook

from vidjobs.webhooks import MemorySeen, Receiver, WebhookVerificationError

SECRET = "whsec_" + base64.b64encode(b"a" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"b" * 32).decode()
BODY = json.dumps({"type": "job.succeeded", "timestamp": "2026-12-01T10:00:00Z", "data": {"key": "vj1_" + "c" * 64, "status": "succeeded", "spec": {}}})


def signed(body: str = BODY, *, secrets: tuple[str, ...] = (SECRET,), msg_id: str = "evt_1", at: dt.datetime | None = None) -> dict[str, str]:
    at = at or dt.datetime.now(dt.UTC)
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets),
    }


def test_a_signed_delivery_verifies_and_gives_the_job() -> None:
    event = Receiver(SECRET).verify(BODY.encode(), signed())
    assert (event.id, event.type) == ("evt_1", "job.succeeded")
    assert event.job is not None and event.job.status == "succeeded" and event.job.key.startswith("vj1_")
    assert event.timestamp == dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)


def test_duplicates_by_webhook_id_are_received_once() -> None:
    receiver = Receiver(SECRET, seen=MemorySeen(size=2))
    assert receiver.receive(BODY, signed(msg_id="a")) is not None
    assert receiver.receive(BODY, signed(msg_id="a")) is None
    assert receiver.receive(BODY, signed(msg_id="b")) is not None


def test_during_rotation_either_secret_verifies() -> None:
    headers = signed(secrets=(OLD, SECRET))
    assert Receiver(OLD).verify(BODY, headers).id == "evt_1"
    assert Receiver(SECRET).verify(BODY, headers).id == "evt_1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: (BODY.replace("succeeded", "failed", 1), h),
        lambda h: (BODY, {**h, "Webhook-Id": "evt_2"}),
        lambda h: (BODY, {**h, "Webhook-Signature": "garbage-without-a-comma"}),
        lambda h: (BODY, {**h, "Webhook-Signature": "v1,%%%not-base64"}),
        lambda h: (BODY, {k: v for k, v in h.items() if k != "Webhook-Timestamp"}),
        lambda h: (BODY, signed(at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))),
        lambda h: (BODY, signed(secrets=(OLD,))),
        lambda h: ("[1, 2]", signed("[1, 2]")),
    ],
)
def test_anything_else_is_refused_with_one_error(tamper: object) -> None:
    body, headers = tamper(signed())  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError):
        Receiver(SECRET).verify(body, headers)
