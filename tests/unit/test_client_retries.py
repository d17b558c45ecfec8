"""The client's retry policy, against scripted answers (httpx.MockTransport)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

import vidjobs
from vidjobs import errors

JOB = {"key": "vj1_" + "a" * 64, "status": "pending", "spec": {}}


def scripted(*steps: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return steps[min(len(seen), len(steps)) - 1](request)

    return httpx.MockTransport(handler), seen


def status(code: int, retry_after: str | None = None, body: object = None) -> Callable[[httpx.Request], httpx.Response]:
    headers = {"Retry-After": retry_after} if retry_after else {}
    payload = body if body is not None else {"error": {"code": f"e{code}", "message": f"answer {code}", "details": None}}
    return lambda _r: httpx.Response(code, json=payload, headers=headers)


def connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def read_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("reset", request=request)


def client(transport: httpx.MockTransport, attempts: int = 4) -> vidjobs.Client:
    return vidjobs.Client("http://vj.test", "vjt_x", transport=transport, retries=vidjobs.RetryPolicy(attempts=attempts, max_wait=1))


def test_429_waits_what_retry_after_says_then_succeeds() -> None:
    transport, seen = scripted(status(429, "0.3"), status(201, body=JOB))
    started = time.monotonic()
    job = client(transport).submit({"source": {"path": "a.mp4"}})
    assert job.key == JOB["key"] and len(seen) == 2
    assert time.monotonic() - started >= 0.3
    assert seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]


def test_503_and_refused_connections_are_retried_for_any_call() -> None:
    transport, seen = scripted(connect_error, status(503, "0"), status(200, body=JOB))
    assert client(transport).retry(JOB["key"]).status == "pending"
    assert len(seen) == 3


def test_a_broken_connection_is_not_resent_when_a_second_send_could_act_twice() -> None:
    transport, seen = scripted(read_error, status(200, body=JOB))
    with pytest.raises(errors.TransportError):
        client(transport).retry(JOB["key"])
    assert len(seen) == 1
    transport, seen = scripted(read_error, status(200, body=JOB))
    assert client(transport).get(JOB["key"]).key == JOB["key"]  # a GET is resent
    assert len(seen) == 2


def test_retries_stop_after_the_policy_and_raise_the_servers_error() -> None:
    transport, seen = scripted(status(429, "0"))
    with pytest.raises(errors.RateLimited) as exc:
        client(transport, attempts=3).get(JOB["key"])
    assert len(seen) == 3 and exc.value.code == "e429" and exc.value.retry_after == 0


@pytest.mark.parametrize(("code", "cls"), [(401, errors.AuthenticationError), (404, errors.NotFound), (409, errors.Conflict), (410, errors.Gone), (413, errors.PayloadTooLarge), (422, errors.InvalidRequest), (500, errors.ServerError)])
def test_each_error_status_is_its_own_exception_and_is_not_retried(code: int, cls: type[errors.VidjobsError]) -> None:
    transport, seen = scripted(status(code))
    with pytest.raises(cls) as exc:
        client(transport).get(JOB["key"])
    assert len(seen) == 1
    assert (exc.value.status, exc.value.code, exc.value.message) == (code, f"e{code}", f"answer {code}")


def test_keys_are_quoted_into_paths() -> None:
    transport, seen = scripted(status(200, body=JOB))
    client(transport).get("../../v1/admin?x=1")
    assert seen[0].url.raw_path == b"/v1/jobs/..%2F..%2Fv1%2Fadmin%3Fx%3D1"


async def test_the_async_client_retries_the_same_way() -> None:
    transport, seen = scripted(status(503, "0"), status(201, body=JOB))
    async with vidjobs.AsyncClient("http://vj.test", "vjt_x", transport=transport) as vj:
        assert (await vj.submit({"source": {"path": "a.mp4"}})).key == JOB["key"]
    assert len(seen) == 2


def test_batch_answers_map_item_by_item() -> None:
    other = {**JOB, "key": "vj1_" + "b" * 64, "status": "succeeded"}
    body = {"results": [
        {"status": 201, "job": JOB},
        {"status": 200, "job": other},
        {"status": 422, "error": {"code": "invalid_request", "message": "bad width", "details": [{"path": "operations[0].width"}]}},
    ]}
    transport, seen = scripted(status(200, body=body))
    items = client(transport).submit_many([{"a": 1}, {"b": 2}, {"c": 3}])
    assert seen[0].url.path == "/v1/jobs/batch" and "Idempotency-Key" in seen[0].headers
    assert [i.status for i in items] == [201, 200, 422]
    assert items[0].job is not None and items[0].job.replayed is False
    assert items[1].job is not None and items[1].job.replayed is True
    assert isinstance(items[2].error, errors.InvalidRequest) and items[2].error.details == [{"path": "operations[0].width"}]
