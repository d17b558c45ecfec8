"""What the S3 adapter's modules share: the client, streamed reads, error codes."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

MISSING = {"404", "NoSuchKey", "NotFound"}
EXISTS = {"PreconditionFailed", "412"}
CHUNK = 1024 * 1024
BUFFER = 8 * CHUNK  # a download's bytes handed to the hashing/writing thread at a time


def code_of(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def open_client(
    endpoint_url: str | None, region: str, credentials: dict[str, str]
) -> tuple[AsyncExitStack, Any]:
    """An aiobotocore S3 client (SigV4; path-style addressing for a custom endpoint)."""
    stack = AsyncExitStack()
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    client = await stack.enter_async_context(
        get_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config, **credentials
        )
    )
    return stack, client


async def stream_to_file(body: Any, dest: Path) -> tuple[str, int]:
    """Write a GET's body to `dest`: (sha256 digest, size). Hashing and writing run in a
    thread a buffer behind the network reads. (Objects larger than a part come down as
    parallel ranged GETs instead: `S3Storage.fetch`.)"""
    h = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:

        def consume(data: bytes) -> None:
            h.update(data)
            out.write(data)

        behind: asyncio.Future[None] | None = None
        chunks: list[bytes] = []
        held = 0
        async for chunk in body.iter_chunks(CHUNK):
            chunks.append(chunk)
            held += len(chunk)
            if held >= BUFFER:
                if behind is not None:
                    await behind
                behind = asyncio.ensure_future(asyncio.to_thread(consume, b"".join(chunks)))
                size += held
                chunks, held = [], 0
        if behind is not None:
            await behind
        consume(b"".join(chunks))
        size += held
    return f"sha256:{h.hexdigest()}", size
