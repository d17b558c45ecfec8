"""The bus contract, run against the in-process bus and a real Kafka broker alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from workers.bus import Bus, Consumer, Message, Record


async def drain(consumer: Consumer, count: int, timeout: float = 20.0) -> list[Record]:
    """Fetch until `count` records arrived (fails after `timeout` seconds)."""
    got: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got += await consumer.fetch(0.5, count - len(got))
    return got


async def quiet(consumer: Consumer, seconds: float = 1.5) -> list[Record]:
    """Whatever arrives within `seconds` (used to show that nothing does)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    got: list[Record] = []
    while loop.time() < end:
        got += await consumer.fetch(0.3, 100)
    return got


@asynccontextmanager
async def member(bus: Bus, group: str) -> AsyncIterator[Consumer]:
    consumer = bus.consumer(group)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def publish(bus: Bus, messages: list[Message]) -> None:
    publisher = bus.publisher()
    await publisher.start()
    try:
        await publisher.publish(messages)
    finally:
        await publisher.stop()


def msg(key: str, i: int) -> Message:
    return Message(key=key, value=f"{key}:{i}".encode(), headers={"event_id": f"{key}-{i}"})


async def test_messages_of_one_key_arrive_in_publish_order(bus: Bus, group: str) -> None:
    messages = [msg(f"job{k}", i) for i in range(20) for k in range(5)]
    await publish(bus, messages)
    async with member(bus, group) as consumer:
        records = await drain(consumer, len(messages))
    for k in range(5):
        values = [r.value for r in records if r.key == f"job{k}"]
        assert values == [f"job{k}:{i}".encode() for i in range(20)]
    assert len({(r.partition, r.offset) for r in records}) == len(messages)


async def test_keys_values_and_headers_round_trip(bus: Bus, group: str) -> None:
    message = Message(key="k-é", value=b"\x00\xffbody", headers={"event_id": "e1", "type": "t"})
    await publish(bus, [message])
    async with member(bus, group) as consumer:
        (record,) = await drain(consumer, 1)
    assert (record.key, record.value, record.headers) == (
        message.key,
        message.value,
        message.headers,
    )


async def test_uncommitted_records_are_redelivered_to_the_next_member(bus: Bus, group: str) -> None:
    await publish(bus, [msg("a", i) for i in range(5)])
    async with member(bus, group) as first:
        seen = await drain(first, 5)
        await first.commit(seen[:2])  # handled two, then "crashed" before committing more
    async with member(bus, group) as second:
        again = await drain(second, 3)
        assert [r.value for r in again] == [r.value for r in seen[2:]]
        assert await quiet(second, 1.0) == []


async def test_committed_records_are_not_redelivered(bus: Bus, group: str) -> None:
    await publish(bus, [msg("a", i) for i in range(3)])
    async with member(bus, group) as first:
        await first.commit(await drain(first, 3))
    await publish(bus, [msg("a", 3)])
    async with member(bus, group) as second:
        (record,) = await drain(second, 1)
        assert record.value == b"a:3"


async def test_every_group_gets_every_record(bus: Bus, group: str) -> None:
    await publish(bus, [msg(f"k{i}", i) for i in range(10)])
    async with member(bus, group + "-a") as a, member(bus, group + "-b") as b:
        got_a = await drain(a, 10)
        got_b = await drain(b, 10)
    assert sorted(r.value for r in got_a) == sorted(r.value for r in got_b)


async def test_a_paused_consumer_fetches_nothing_until_resumed(bus: Bus, group: str) -> None:
    async with member(bus, group) as consumer:
        await quiet(consumer, 1.0)  # joined and assigned before we pause
        consumer.pause()
        await publish(bus, [msg("p", i) for i in range(4)])
        assert await quiet(consumer, 1.5) == []
        consumer.resume()
        assert len(await drain(consumer, 4)) == 4


async def test_lag_counts_records_not_yet_fetched(bus: Bus, group: str) -> None:
    async with member(bus, group) as consumer:
        await quiet(consumer, 1.0)
        await publish(bus, [msg(f"l{i}", i) for i in range(6)])
        await asyncio.sleep(0.5)
        got = await drain(consumer, 6)
        assert len(got) == 6
        assert await consumer.lag() == 0
