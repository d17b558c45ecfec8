"""A real Kafka broker for tests: its address, unique names, and throwaway topics.

The test command starts a private single-node KRaft broker and exports
VIDJOBS_TEST_KAFKA_BOOTSTRAP. Each test uses its own topic and group names, so tests never
see each other's records, even on a shared broker.
"""

from __future__ import annotations

import contextlib
import os
import uuid

from tests.support.databases import require_service

KAFKA_ENV = "VIDJOBS_TEST_KAFKA_BOOTSTRAP"


def kafka_bootstrap() -> str:
    value = os.environ.get(KAFKA_ENV)
    if not value:
        require_service(
            "Kafka",
            f"set {KAFKA_ENV} (make test starts a private broker from jars Maven resolves; "
            "it needs java and mvn on PATH)",
        )
    assert value is not None
    return value


def unique(prefix: str) -> str:
    return f"vjt-{prefix}-{uuid.uuid4().hex[:10]}"


async def delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics([topic])
    with contextlib.suppress(Exception):
        await admin.close()
