"""Staged objects on S3: direct uploads that a client PUTs to presigned URLs (one, or one
per part), read back by vidjobs to be verified and stored under their digest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from jobs.errors import BlobMissing
from jobs.storage.base import CHUNK, DirectUpload
from jobs.storage.s3_common import MISSING, code_of


class S3Staging:
    """Mixed into `S3Storage`, which has these (its client and its abort)."""

    bucket: str
    prefix: str
    multipart_threshold: int
    part_size: int

    async def client(self) -> Any:
        raise NotImplementedError

    async def _abort(self, key: str, upload_id: str) -> None:
        raise NotImplementedError

    def _staged(self, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a staged object name: {name[:80]!r}")
        return f"{self.prefix}/uploads/{name}" if self.prefix else f"uploads/{name}"

    async def presign_upload(
        self, name: str, *, size: int, media_type: str, expires: int
    ) -> DirectUpload | None:
        c = await self.client()
        key = self._staged(name)
        if size <= self.multipart_threshold:
            url = await c.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ContentType": media_type},
                ExpiresIn=expires,
            )
            return DirectUpload(str(url), [], None, {"Content-Type": media_type})
        upload = await c.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=media_type
        )
        upload_id = str(upload["UploadId"])
        parts: list[dict[str, object]] = []
        for number, offset in enumerate(range(0, size, self.part_size), start=1):
            url = await c.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=expires,
            )
            length = min(self.part_size, size - offset)
            parts.append({"part_number": number, "url": str(url), "offset": offset, "size": length})
        return DirectUpload(None, parts, upload_id, {})

    async def stage(self, name: str, path: Path) -> None:
        """A staged object from a local file (streamed from the file, one PUT)."""
        c = await self.client()
        try:
            with path.open("rb") as body:
                await c.put_object(Bucket=self.bucket, Key=self._staged(name), Body=body)
        finally:
            path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink

    async def fetch_staged(self, name: str, dest: Path, multipart_id: str | None) -> int:
        c = await self.client()
        key = self._staged(name)
        if multipart_id is not None:
            await self._complete_staged(key, multipart_id)
        try:
            obj = await c.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if code_of(exc) in MISSING:
                raise BlobMissing("no bytes were sent for this upload") from None
            raise
        size = 0
        try:
            with dest.open("wb") as out:
                async for chunk in obj["Body"].iter_chunks(CHUNK):
                    size += len(chunk)
                    out.write(chunk)
        except BaseException:
            dest.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink
            raise
        finally:
            obj["Body"].close()
        return size

    async def _complete_staged(self, key: str, upload_id: str) -> None:
        """Complete a client's multipart upload from the parts the server holds."""
        c = await self.client()
        parts: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id}
        try:
            while True:
                page = await c.list_parts(**kwargs)
                found = page.get("Parts", [])
                parts += [{"ETag": p["ETag"], "PartNumber": p["PartNumber"]} for p in found]
                if not page.get("IsTruncated"):
                    break
                kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]
        except ClientError as exc:
            if code_of(exc) in {"NoSuchUpload", "404"}:
                return  # completed (or aborted) before: the object tells which
            raise
        if not parts:
            raise BlobMissing("no bytes were sent for this upload")
        await c.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    async def delete_staged(self, name: str, multipart_id: str | None) -> None:
        c = await self.client()
        key = self._staged(name)
        if multipart_id is not None:
            await self._abort(key, multipart_id)
        await c.delete_object(Bucket=self.bucket, Key=key)
