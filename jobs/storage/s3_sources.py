"""Reading S3 sources (`{"source": {"s3": "s3://bucket/key"}}`), pinned to one version.

At submission the object is looked up (HEAD): its digest is its full-object SHA-256 checksum
when it has one, else it is hashed once (streamed, nothing written) and cached by bucket,
key, ETag, version and size. The job stores the ETag (and VersionId when the bucket keeps
versions), and the worker reads exactly that version (`VersionId`, or `If-Match` on the
ETag), verifying the digest while the bytes stream: an object overwritten or deleted after
submission fails the attempt with `source_changed` (unless the worker already holds those
bytes, verified, in its input cache: `workers.inputcache`), never runs on other bytes.

The client uses the storage endpoint (`VIDJOBS_S3_ENDPOINT_URL` / `AWS_ENDPOINT_URL`) and the
standard AWS credentials; what a tenant may read is decided by its grants (`jobs.grants`).
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from jobs.errors import SourceChanged
from jobs.storage.base import check_digest
from jobs.storage.s3_common import (
    EXISTS,
    MISSING,
    S3Connection,
    code_of,
    hash_body,
    stream_to_file,
)


@dataclass(frozen=True)
class ObjectVersion:
    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int
    sha256: str | None  # sha256:<hex> from a full-object checksum, if the object has one

    def pin(self) -> dict[str, Any]:
        """What a job stores to read this very version later."""
        return {"bucket": self.bucket, "key": self.key, "etag": self.etag,
                "version_id": self.version_id}


class S3Sources:
    def __init__(
        self,
        endpoint_url: str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        cache_entries: int = 4096,
    ) -> None:
        self._s3 = S3Connection(
            endpoint_url, access_key=access_key, secret_key=secret_key, region=region
        )
        self._digests: OrderedDict[tuple[str, str, str, str | None, int], str] = OrderedDict()
        self._max = cache_entries
        self.hashed = 0  # objects read whole to hash them (cache misses without a checksum)

    async def client(self) -> Any:
        return await self._s3.client()

    async def close(self) -> None:
        await self._s3.close()

    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        """The object's current version, or None if it is missing or not readable."""
        c = await self.client()
        try:
            h = await c.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if code_of(exc) in MISSING | {"403", "AccessDenied", "NoSuchBucket"}:
                return None
            raise
        sha = h.get("ChecksumSHA256")
        full = sha and "-" not in sha and h.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        return ObjectVersion(
            bucket, key, str(h["ETag"]), h.get("VersionId"), int(h["ContentLength"]),
            f"sha256:{base64.b64decode(sha).hex()}" if full else None,
        )

    async def digest(self, obj: ObjectVersion) -> str:
        if obj.sha256 is not None:
            return obj.sha256
        ident = (obj.bucket, obj.key, obj.etag, obj.version_id, obj.size)
        if ident in self._digests:
            self._digests.move_to_end(ident)
            return self._digests[ident]
        value = await hash_body(await self._get(obj.pin()))
        self.hashed += 1
        self._digests[ident] = value
        while len(self._digests) > self._max:
            self._digests.popitem(last=False)
        return value

    async def _get(self, pin: dict[str, Any]) -> Any:
        c = await self.client()
        kwargs: dict[str, Any] = {"Bucket": pin["bucket"], "Key": pin["key"]}
        if pin.get("version_id"):
            kwargs["VersionId"] = pin["version_id"]
        else:
            kwargs["IfMatch"] = pin["etag"]
        where = f"s3://{pin['bucket']}/{pin['key']}"
        try:
            return (await c.get_object(**kwargs))["Body"]
        except ClientError as exc:
            code = code_of(exc)
            if code in EXISTS:
                raise _changed(where, "it was overwritten") from None
            if code in MISSING | {"NoSuchVersion"}:
                raise _changed(where, "it was deleted") from None
            raise

    async def fetch(self, pin: dict[str, Any], digest: str, dest: Path) -> int:
        """Download the pinned version into `dest`, verified against `digest`."""
        body = await self._get(pin)
        try:
            found, size = await stream_to_file(body, dest)
            check_digest(digest, found, f"s3://{pin['bucket']}/{pin['key']}")
        except BaseException:
            dest.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink
            raise
        finally:
            body.close()
        return size


def _changed(where: str, why: str) -> SourceChanged:
    return SourceChanged(
        f"the source object {where} changed after the job was submitted: {why}; "
        "submit the edit again to run it on the current object",
        details={"source": where},
    )
