"""A Kafka client whose start fails (no broker) is closed, not left for the GC to warn
about: the consumer loop and the relay retry with a new one every few seconds."""

from __future__ import annotations

import asyncio
import socket

import pytest

from workers.bus.kafka import KafkaBus


def closed_port() -> int:
    with socket.socket() as s:  # bound, then released: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_consumer_that_could_not_start_is_closed() -> None:
    async def main() -> None:
        bus = KafkaBus(f"127.0.0.1:{closed_port()}", "t", request_timeout=2.0)
        consumer = bus.consumer("g")
        with pytest.raises(Exception, match=r"bootstrap|connect"):
            await consumer.start()
        assert consumer._consumer._closed is True

    asyncio.run(main())


def test_a_producer_that_could_not_start_is_closed() -> None:
    async def main() -> None:
        bus = KafkaBus(f"127.0.0.1:{closed_port()}", "t", request_timeout=2.0)
        publisher = bus.publisher()
        made = []
        real = publisher._new_producer

        def keep():  # type: ignore[no-untyped-def]
            made.append(real())
            return made[-1]

        publisher._new_producer = keep  # type: ignore[method-assign]
        with pytest.raises(Exception, match=r"bootstrap|connect"):
            await publisher.start()
        assert publisher._producer is None
        assert made and made[0]._closed is True

    asyncio.run(main())
