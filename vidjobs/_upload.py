"""Direct uploads, shared by both clients: where each byte range of a file goes.

`POST /v1/uploads` answers one URL (a presigned PUT on S3 storage, or the API's own
`PUT /v1/uploads/{id}` on local storage) or one presigned URL per part. The client PUTs each
range there, then `POST /v1/uploads/{id}/complete` has the server check and store the file.
Only the API's own URL gets the bearer token: a storage server never sees it (and a
presigned request that also carried an Authorization header would be refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from vidjobs._http import Call

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Piece:
    """One PUT: `size` bytes of the file from `offset`, to `url`."""

    url: str
    offset: int
    size: int
    headers: dict[str, str]
    to_api: bool  # the API's own URL: send the client's bearer token


def create(size: int, media_type: str) -> Call:
    # A retried create makes a second upload id; an unused one expires on its own.
    return Call("POST", "/v1/uploads", json={"size": size, "media_type": media_type})


def complete(upload_id: str) -> Call:
    # Completing twice answers the same digest, so a lost answer may be asked again.
    return Call("POST", f"/v1/uploads/{upload_id}/complete")


def pieces(answer: dict[str, Any], size: int, api: httpx.URL) -> list[Piece]:
    """The PUTs an upload answer asks for, in order."""
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
    parts = answer.get("parts") or []
    if not parts:
        url = str(answer["url"])
        return [Piece(url, 0, size, headers, _same_origin(url, api))]
    return [
        Piece(str(p["url"]), int(p["offset"]), int(p["size"]), headers, _same_origin(p["url"], api))
        for p in parts
    ]


def _same_origin(url: str, api: httpx.URL) -> bool:
    target = httpx.URL(url)
    return (target.scheme, target.host, target.port) == (api.scheme, api.host, api.port)


def put_headers(piece: Piece) -> dict[str, str]:
    # An explicit length: presigned PUTs refuse chunked bodies.
    return {**piece.headers, "Content-Length": str(piece.size)}


def read_range(file: Path, piece: Piece) -> Iterator[bytes]:
    with file.open("rb") as f:
        yield from _chunks(f, piece)


async def aread_range(file: Path, piece: Piece) -> AsyncIterator[bytes]:
    import asyncio

    f = await asyncio.to_thread(file.open, "rb")
    try:
        chunks = _chunks(f, piece)
        while chunk := await asyncio.to_thread(next, chunks, b""):
            yield chunk
    finally:
        f.close()


def _chunks(f: BinaryIO, piece: Piece) -> Iterator[bytes]:
    f.seek(piece.offset)
    left = piece.size
    while left > 0:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise OSError(f"the file ended {left} bytes before the upload's declared size")
        left -= len(chunk)
        yield chunk
