"""The bus port and its two implementations; `make_bus` picks one from the settings."""

from __future__ import annotations

from jobs.settings import Settings
from workers.bus.base import Bus, BusError, CommitFailed, Consumer, Message, Publisher, Record
from workers.bus.memory import InProcessBus

__all__ = [
    "Bus",
    "BusError",
    "CommitFailed",
    "Consumer",
    "InProcessBus",
    "Message",
    "Publisher",
    "Record",
    "make_bus",
]


def make_bus(settings: Settings) -> Bus:
    """Kafka when `VIDJOBS_KAFKA_BOOTSTRAP` is set, else the in-process bus (embedded mode)."""
    if settings.kafka_bootstrap:
        from workers.bus.kafka import KafkaBus

        return KafkaBus(
            settings.kafka_bootstrap,
            settings.kafka_topic,
            partitions=settings.kafka_partitions,
            replication=settings.kafka_replication,
        )
    return InProcessBus(settings.kafka_topic, settings.kafka_partitions)
