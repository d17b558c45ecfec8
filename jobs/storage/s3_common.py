"""What the S3 adapter's modules share: the client, streamed reads, error codes."""

from __future__ import annotations

import asyncio
import hashlib
import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

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
    """An aiobotocore S3 client (SigV4; path-style addressing for a custom endpoint).
    aiobotocore (and aiohttp) are imported here, on first use: a worker or API process on
    local storage never loads them (a third of a second of its start-up)."""
    from aiobotocore.session import get_session

    stack = AsyncExitStack()
    config = Config(
        signature_version="s3v4",
        # Bodies carry a checksum the server checks (a part's CRC32, a single object's
        # SHA-256), so the signature need not hash them again on the event loop: botocore's
        # own choice over https, made here for http endpoints too.
        s3={
            "addressing_style": "path" if endpoint_url else "auto",
            "payload_signing_enabled": False,
        },
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    client = await stack.enter_async_context(
        get_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config, **credentials
        )
    )
    return stack, client


class S3Connection:
    """The aiobotocore client of one endpoint and credentials, made on first use in the
    running event loop (shared by `S3Storage` and `S3Sources`)."""

    def __init__(
        self,
        endpoint_url: str | None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self._credentials = {
            k: v
            for k, v in (("aws_access_key_id", access_key), ("aws_secret_access_key", secret_key))
            if v
        }
        self.region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._stack, self._client = await open_client(
                        self.endpoint_url, self.region, self._credentials
                    )
        return self._client

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()


async def hash_body(body: Any) -> str:
    """A GET's body hashed as it streams (nothing written): its sha256 digest. Closes it."""
    h = hashlib.sha256()
    try:
        async for chunk in body.iter_chunks(CHUNK):
            await asyncio.to_thread(h.update, chunk)
    finally:
        body.close()
    return f"sha256:{h.hexdigest()}"


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
