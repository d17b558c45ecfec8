"""S3-compatible object storage through aiobotocore (AWS S3, versitygw, MinIO, ...).

Writes are conditional (`If-None-Match: *` on PutObject and on CompleteMultipartUpload): a
digest's object is written once, and a writer that finds it already there has succeeded.
Single-part writes also send their SHA-256 checksum, so the server refuses bytes that do not
match the digest. Large files go up in parts (a few at a time); any failure aborts the
upload, so no orphaned parts are left behind (the reaper aborts those of killed writers).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import io
import os
import re
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from jobs.errors import BlobMissing, RangeNotSatisfiable, SourceChanged
from jobs.storage.base import (
    CHUNK,
    ByteRange,
    Scratch,
    check_digest,
    file_sha256,
    object_name,
)
from jobs.storage.s3_common import EXISTS, MISSING, S3Connection, code_of, stream_to_file
from jobs.storage.s3_staging import S3Staging

MiB = 1024 * 1024
_BAD_DIGEST = {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest"}
_CONFLICT = {"ConditionalRequestConflict", "409", "OperationAborted"}


class S3Storage(S3Staging, Scratch):
    direct_uploads = True

    def __init__(
        self,
        url: str,
        scratch: Path,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
        part_concurrency: int = 4,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        super().__init__(scratch, durable=False)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.description = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._s3 = S3Connection(
            endpoint_url, access_key=access_key, secret_key=secret_key, region=region
        )
        self.multipart_threshold = max(multipart_threshold, 5 * MiB)
        self.part_size = max(part_size, 5 * MiB)  # S3's smallest part (all but the last)
        self.part_concurrency = max(1, part_concurrency)

    def key(self, digest: str) -> str:
        name = object_name(digest)
        return f"{self.prefix}/{name}" if self.prefix else name

    async def client(self) -> Any:
        """The aiobotocore client, made on first use in the running event loop."""
        return await self._s3.client()

    async def close(self) -> None:
        await self._s3.close()

    async def ensure(self) -> None:
        """Check the bucket answers (and that the credentials are good)."""
        self.ensure_scratch()
        c = await self.client()
        await c.head_bucket(Bucket=self.bucket)

    async def create_bucket(self) -> None:
        """Create the bucket if it does not exist (`vidjobs migrate` does this)."""
        c = await self.client()
        try:
            await c.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if code_of(exc) not in MISSING:
                raise
            try:
                await c.create_bucket(Bucket=self.bucket)
            except ClientError as again:
                if code_of(again) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def local_path(self, digest: str) -> Path | None:
        return None

    async def exists(self, digest: str) -> bool:
        c = await self.client()
        try:
            await c.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as exc:
            if code_of(exc) in MISSING:
                return False
            raise
        return True

    # --- writes ----------------------------------------------------------------------

    async def put_file(self, path: Path, digest: str | None = None) -> tuple[str, int]:
        """The file is hashed once: before the upload when its digest (the key) is not
        known, else on the way up (single part: the server checks the SHA-256 checksum;
        multipart: the parts are hashed in order and the upload aborted on a mismatch)."""
        try:
            if digest is None:
                name, size = await asyncio.to_thread(file_sha256, path)
            else:
                name, size = digest, os.stat(path).st_size
            verify = digest is not None
            if size < self.multipart_threshold:
                await self._put_single(path, name, verify)
            else:
                await self._put_multipart(path, name, size, verify)
            return name, size
        finally:
            path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink

    async def _put_single(self, path: Path, digest: str, verify: bool) -> None:
        c = await self.client()
        body = await asyncio.to_thread(path.read_bytes)
        checksum = base64.b64encode(bytes.fromhex(digest.split(":", 1)[1])).decode()
        for attempt in range(8):
            try:
                await c.put_object(
                    Bucket=self.bucket,
                    Key=self.key(digest),
                    Body=body,
                    IfNoneMatch="*",
                    ChecksumSHA256=checksum,
                )
                return
            except ClientError as exc:
                code = code_of(exc)
                if code in EXISTS:  # stored first by someone: were these its bytes?
                    if verify:
                        h = await asyncio.to_thread(hashlib.sha256, body)
                        check_digest(digest, f"sha256:{h.hexdigest()}", f"the file {path.name}")
                    return
                if code in _BAD_DIGEST:
                    raise SourceChanged(
                        f"the file {path.name} being stored does not hash to {digest}",
                        details={"expected": digest},
                    ) from None
                if code in _CONFLICT and attempt < 7:  # a concurrent conditional write
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                raise

    async def _put_multipart(self, path: Path, digest: str, size: int, verify: bool) -> None:
        c = await self.client()
        key = self.key(digest)
        upload = await c.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        try:
            parts = await self._upload_parts(path, key, upload_id, size, digest if verify else None)
            try:
                await c.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if code_of(exc) not in EXISTS:
                    raise
                await self._abort(key, upload_id)  # the object was there first
        except BaseException:
            await asyncio.shield(self._abort(key, upload_id))
            raise

    async def _upload_parts(
        self, path: Path, key: str, upload_id: str, size: int, verify: str | None
    ) -> list[dict[str, Any]]:
        """Upload the file's parts, a few at a time; with `verify`, hash them in file order
        on the way and fail (before completing) unless they hash to that digest."""
        c = await self.client()
        count = (size + self.part_size - 1) // self.part_size
        limit = asyncio.Semaphore(self.part_concurrency)
        h = hashlib.sha256()
        hashed = asyncio.Condition()
        turn = [1]

        def read(number: int) -> tuple[io.BytesIO, str]:
            with path.open("rb") as f:
                f.seek((number - 1) * self.part_size)
                body = io.BytesIO(f.read(self.part_size))
            # botocore hands aiohttp a part as a BytesIO, and aiohttp's getbuffer() on one
            # still sharing its bytes copies the whole part on the event loop: this first
            # getbuffer() makes that copy here, in this thread, and the bytes read are freed.
            with body.getbuffer() as view:
                return body, crc32_header(view)

        def update(body: io.BytesIO) -> None:
            with body.getbuffer() as view:
                h.update(view)

        async def one(number: int) -> dict[str, Any]:
            async with limit:
                body, crc = await asyncio.to_thread(read, number)
                if verify is not None:
                    async with hashed:  # parts are hashed in file order (in a thread)
                        await hashed.wait_for(lambda: turn[0] == number)
                        await asyncio.to_thread(update, body)
                        turn[0] += 1
                        hashed.notify_all()
                r = await c.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ChecksumCRC32=crc,
                )
                return {"ETag": r["ETag"], "PartNumber": number}

        parts = await _all_or_none([one(n) for n in range(1, count + 1)])
        if verify is not None:
            check_digest(verify, f"sha256:{h.hexdigest()}", f"the file {path.name} being stored")
        return parts

    async def _abort(self, key: str, upload_id: str) -> None:
        c = await self.client()
        try:
            await c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if code_of(exc) not in {"NoSuchUpload", "404"}:
                raise

    async def abort_stale_uploads(self, older_than_seconds: float) -> int:
        c = await self.client()
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_seconds)
        aborted = 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.prefix:
            kwargs["Prefix"] = f"{self.prefix}/"
        while True:
            page = await c.list_multipart_uploads(**kwargs)
            for up in page.get("Uploads", []):
                if up["Initiated"] <= cutoff:
                    await self._abort(up["Key"], up["UploadId"])
                    aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    async def delete(self, digest: str) -> None:
        c = await self.client()
        await c.delete_object(Bucket=self.bucket, Key=self.key(digest))

    # --- reads -----------------------------------------------------------------------

    async def _get(self, digest: str, **kwargs: Any) -> Any:
        c = await self.client()
        try:
            return await c.get_object(Bucket=self.bucket, Key=self.key(digest), **kwargs)
        except ClientError as exc:
            if code_of(exc) in MISSING:
                raise BlobMissing(f"{digest} is missing from storage") from None
            raise

    async def fetch(self, digest: str, dest: Path) -> int:
        """Download and verify. An object larger than a part comes down as ranged GETs of
        `part_size`, `part_concurrency` at a time (as boto3's transfer manager does: one
        streamed GET is bound by one connection's reads on the event loop), hashed and
        written in file order in a thread; smaller ones as one streamed GET."""
        try:
            first = await self._get(digest, Range=f"bytes=0-{self.part_size - 1}")
        except ClientError as exc:
            if code_of(exc) not in {"InvalidRange", "416"}:
                raise
            first = await self._get(digest)  # an empty object has no byte 0 to range over
        try:
            total = _total_size(first)
            if total <= self.part_size:
                found, size = await stream_to_file(first["Body"], dest)
            else:
                found, size = await self._fetch_parts(digest, first, total, dest)
            check_digest(digest, found, f"stored object {digest}")
        except BaseException:
            dest.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink
            raise
        finally:
            first["Body"].close()
        return size

    async def _fetch_parts(
        self, digest: str, first: Any, total: int, dest: Path
    ) -> tuple[str, int]:
        """Each part is written at its offset as soon as it is here (in a thread); the hash
        takes the parts in file order, so a part is held until both are done with it."""
        count = (total + self.part_size - 1) // self.part_size
        limit = asyncio.Semaphore(self.part_concurrency)
        h = hashlib.sha256()
        in_order = asyncio.Condition()
        turn = [0]
        with dest.open("wb") as out:

            def update(chunks: list[bytes]) -> None:
                for chunk in chunks:
                    h.update(chunk)

            async def hashed(number: int, chunks: list[bytes]) -> None:
                async with in_order:
                    await in_order.wait_for(lambda: turn[0] == number)
                    await asyncio.to_thread(update, chunks)
                    turn[0] += 1
                    in_order.notify_all()

            async def one(number: int) -> None:
                async with limit:  # held until written and hashed: bounded memory
                    if number == 0:
                        obj = first
                    else:
                        start = number * self.part_size
                        end = min(total, start + self.part_size) - 1
                        obj = await self._get(digest, Range=f"bytes={start}-{end}")
                    try:  # kept as the chunks that came (one join would copy it again)
                        chunks = [c async for c in obj["Body"].iter_chunks(CHUNK)]
                    finally:
                        obj["Body"].close()
                    offset = number * self.part_size
                    expected = min(total, offset + self.part_size) - offset
                    got = sum(map(len, chunks))
                    if got != expected:  # it would land over its neighbour's bytes
                        raise SourceChanged(
                            f"stored object {digest}: bytes {offset}-{offset + expected - 1} "
                            f"came back as {got} bytes",
                            details={"expected": digest},
                        )
                    await asyncio.gather(
                        asyncio.to_thread(_pwrite_all, out.fileno(), chunks, offset),
                        hashed(number, chunks),
                    )

            await _all_or_none([one(n) for n in range(count)])
            size = os.fstat(out.fileno()).st_size
        return f"sha256:{h.hexdigest()}", size

    async def read_range(self, digest: str, start: int, end: int | None) -> ByteRange:
        kwargs: dict[str, Any] = {}
        if start < 0:  # a suffix: the last -start bytes
            kwargs["Range"] = f"bytes={start}"
        elif start > 0 or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            obj = await self._get(digest, **kwargs)
        except ClientError as exc:
            if code_of(exc) not in {"InvalidRange", "416"}:
                raise
            raise RangeNotSatisfiable(
                f"the range starts at byte {start}, past the end of the file"
            ) from None
        length = int(obj["ContentLength"])
        m = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", str(obj.get("ContentRange") or ""))
        if m is not None:
            first, last, total = int(m.group(1)), int(m.group(2)), int(m.group(3))
        else:
            first, last, total = 0, length - 1, length

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in obj["Body"].iter_chunks(CHUNK):
                    yield chunk
            finally:
                obj["Body"].close()

        return ByteRange(first, last, total, chunks())

    async def presign_get(
        self, digest: str, *, expires: int, filename: str, media_type: str
    ) -> str | None:
        c = await self.client()
        url = await c.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.key(digest),
                "ResponseContentType": media_type,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=expires,
        )
        return str(url)

    async def presign_put(self, name: str, *, expires: int, media_type: str) -> str:
        """A short-lived URL a client can PUT one object's bytes to (direct uploads)."""
        c = await self.client()
        key = f"{self.prefix}/{name}" if self.prefix else name
        url = await c.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": media_type},
            ExpiresIn=expires,
        )
        return str(url)


def _pwrite_all(fd: int, chunks: list[bytes], offset: int) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done


def crc32_header(body: bytes | memoryview) -> str:
    """A part's CRC32 as S3's x-amz-checksum-crc32 wants it (base64 of 4 big-endian bytes),
    worked out where the part is read (in a thread) rather than by botocore on the loop."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


def _total_size(obj: Any) -> int:
    """The whole object's size from a ranged GET's Content-Range (or its length)."""
    m = re.match(r"^bytes \d+-\d+/(\d+)$", str(obj.get("ContentRange") or ""))
    return int(m.group(1)) if m is not None else int(obj["ContentLength"])


async def _all_or_none(coros: list[Any]) -> list[Any]:
    """Run them together; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
