"""The storage port's contract, run on the local directory and on a real S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from jobs.errors import BlobMissing, RangeNotSatisfiable, SourceChanged
from jobs.storage import LocalStorage, Storage
from jobs.storage.s3 import S3Storage

MiB = 1024 * 1024


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def object_names(storage: Storage) -> list[str]:
    """Every stored object (not scratch files), as names relative to the store."""
    if isinstance(storage, LocalStorage):
        return sorted(
            str(p.relative_to(storage.root))
            for p in (storage.root / "sha256").rglob("*")
            if p.is_file()
        )
    assert isinstance(storage, S3Storage)
    c = await storage.client()
    page = await c.list_objects_v2(Bucket=storage.bucket)
    return sorted(o["Key"] for o in page.get("Contents", []))


async def open_uploads(storage: Storage) -> int:
    if isinstance(storage, LocalStorage):
        return 0
    assert isinstance(storage, S3Storage)
    c = await storage.client()
    return len((await c.list_multipart_uploads(Bucket=storage.bucket)).get("Uploads", []))


@pytest.mark.parametrize("size", [0, 1, 100_000, 13 * MiB + 17], ids=["empty", "1B", "100kB", "multipart"])
async def test_put_then_fetch_round_trips_verified_bytes(
    storage: Storage, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    src = write(tmp_path / "in" / "file", data)
    digest, stored = await storage.put_file(src)
    assert (digest, stored) == (digest_of(data), size)
    assert not src.exists()  # the file was consumed
    assert await storage.exists(digest)
    assert not await storage.exists(digest_of(b"something else"))
    dest = tmp_path / "out" / "copy"
    dest.parent.mkdir()
    assert await storage.fetch(digest, dest) == size
    assert dest.read_bytes() == data
    assert len(await object_names(storage)) == 1
    assert await open_uploads(storage) == 0


async def test_sixteen_concurrent_writers_of_one_digest_all_succeed_with_one_object(
    storage: Storage, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    files = [write(tmp_path / f"w{i}" / "out.bin", data) for i in range(16)]
    results = await asyncio.gather(*(storage.put_file(f) for f in files))
    assert set(results) == {(digest_of(data), len(data))}
    assert len(await object_names(storage)) == 1
    dest = tmp_path / "check"
    await storage.fetch(digest_of(data), dest)
    assert dest.read_bytes() == data


async def test_a_second_writer_never_overwrites_the_first(storage: Storage, tmp_path: Path) -> None:
    data = b"first bytes" * 1000
    digest, _ = await storage.put_file(write(tmp_path / "a", data))
    # A writer claiming the same digest for other bytes is refused and changes nothing.
    with pytest.raises(SourceChanged):
        await storage.put_file(write(tmp_path / "b", b"other bytes"), digest)
    again, _ = await storage.put_file(write(tmp_path / "c", data), digest)
    assert again == digest
    await storage.fetch(digest, tmp_path / "check")
    assert (tmp_path / "check").read_bytes() == data


@pytest.mark.parametrize("size", [50_000, 13 * MiB], ids=["single", "multipart"])
async def test_bytes_that_do_not_match_the_digest_store_nothing(
    storage: Storage, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    wrong = digest_of(data + b"!")
    with pytest.raises(SourceChanged):
        await storage.put_file(write(tmp_path / "f", data), wrong)
    assert not await storage.exists(wrong)
    assert not await storage.exists(digest_of(data))
    assert await object_names(storage) == []
    assert await open_uploads(storage) == 0  # the multipart upload was aborted


@pytest.mark.s3
async def test_a_multipart_upload_that_fails_midway_is_aborted_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch", multipart_threshold=5 * MiB,
                                     part_size=5 * MiB)
    try:
        c = await store.client()
        real = c.upload_part
        calls: list[int] = []

        async def flaky(**kw: object) -> object:
            calls.append(int(kw["PartNumber"]))  # type: ignore[call-overload]
            if kw["PartNumber"] == 3:
                raise ConnectionResetError("the network went away")
            return await real(**kw)

        monkeypatch.setattr(c, "upload_part", flaky)
        with pytest.raises(ConnectionResetError):
            await store.put_file(write(tmp_path / "big", os.urandom(16 * MiB)))
        assert 3 in calls
        assert await object_names(store) == []
        assert await open_uploads(store) == 0
    finally:
        await drop_bucket(store)


@pytest.mark.s3
async def test_a_part_damaged_on_the_way_up_is_refused_by_the_server_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each part carries the CRC32 worked out where it was read; the server checks it (the
    signature does not cover the body)."""
    from botocore.exceptions import ClientError

    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch", multipart_threshold=5 * MiB,
                                     part_size=5 * MiB)  # fmt: skip
    try:
        c = await store.client()
        real = c.upload_part

        async def damaging(**kw: object) -> object:
            if kw["PartNumber"] == 2:
                body = bytearray(kw["Body"].getvalue())  # type: ignore[attr-defined]
                body[1000] ^= 1
                kw["Body"] = bytes(body)
            return await real(**kw)

        monkeypatch.setattr(c, "upload_part", damaging)
        with pytest.raises(ClientError, match="BadDigest"):
            await store.put_file(write(tmp_path / "big", os.urandom(12 * MiB)))
        assert await object_names(store) == []
        assert await open_uploads(store) == 0
    finally:
        await drop_bucket(store)


@pytest.mark.s3
async def test_a_ranged_part_of_the_wrong_length_is_refused_before_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are written at their offsets as they come: one longer than asked for would
    overwrite its neighbour even when the bytes, taken in order, hash right."""
    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch", multipart_threshold=5 * MiB,
                                     part_size=5 * MiB)  # fmt: skip
    try:
        data = os.urandom(11 * MiB)
        digest, _ = await store.put_file(write(tmp_path / "big", data))
        c = await store.client()
        real = c.get_object

        async def shifted(**kw: object) -> object:
            if kw.get("Range") == f"bytes={5 * MiB}-{10 * MiB - 1}":
                kw["Range"] = f"bytes={5 * MiB}-{10 * MiB + 99}"  # 100 bytes too many
            if kw.get("Range") == f"bytes={10 * MiB}-{11 * MiB - 1}":
                kw["Range"] = f"bytes={10 * MiB + 100}-{11 * MiB - 1}"
            return await real(**kw)

        monkeypatch.setattr(c, "get_object", shifted)
        with pytest.raises(SourceChanged, match="came back as"):
            await store.fetch(digest, tmp_path / "down")
        assert not (tmp_path / "down").exists()
    finally:
        await drop_bucket(store)


@pytest.mark.s3
async def test_a_large_object_comes_down_in_ranged_parts_verified_and_in_order(
    tmp_path: Path,
) -> None:
    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch", multipart_threshold=5 * MiB,
                                     part_size=5 * MiB, part_concurrency=3)  # fmt: skip
    try:
        c = await store.client()
        real, ranges = c.get_object, []

        async def counting(**kw: object) -> object:
            ranges.append(kw.get("Range"))
            return await real(**kw)

        c.get_object = counting
        data = os.urandom(17 * MiB + 123)  # 4 parts, the last one short
        digest, _ = await store.put_file(write(tmp_path / "big", data))
        assert await store.fetch(digest, tmp_path / "down") == len(data)
        assert (tmp_path / "down").read_bytes() == data
        assert len(ranges) == 4 and all(r is not None for r in ranges)
        # A changed byte in a middle part is caught, and the partial file removed.
        evil = bytearray(data)
        evil[11 * MiB] ^= 1
        await c.put_object(Bucket=store.bucket, Key=store.key(digest), Body=bytes(evil))
        with pytest.raises(SourceChanged):
            await store.fetch(digest, tmp_path / "bad")
        assert not (tmp_path / "bad").exists()
        # An empty object has no byte range: one plain GET.
        empty, _ = await store.put_file(write(tmp_path / "empty", b""))
        assert await store.fetch(empty, tmp_path / "e") == 0
        assert (tmp_path / "e").read_bytes() == b""
    finally:
        await drop_bucket(store)


async def test_fetching_an_unknown_digest_is_blob_missing_and_leaves_no_file(
    storage: Storage, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(BlobMissing):
        await storage.fetch(digest_of(b"never stored"), dest)
    assert not dest.exists()


async def test_a_corrupted_object_is_refused_while_it_streams(
    storage: Storage, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    digest, _ = await storage.put_file(write(tmp_path / "f", data))
    evil = data[:-1] + bytes([data[-1] ^ 1])
    if isinstance(storage, LocalStorage):  # someone writes under the store's feet
        path = storage.path_for(digest)
        path.chmod(0o644)
        path.write_bytes(evil)
    else:
        assert isinstance(storage, S3Storage)
        c = await storage.client()
        await c.put_object(Bucket=storage.bucket, Key=storage.key(digest), Body=evil)
    dest = tmp_path / "dest"
    with pytest.raises(SourceChanged):
        await storage.fetch(digest, dest)
    assert not dest.exists()


async def test_byte_ranges(storage: Storage, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    digest, _ = await storage.put_file(write(tmp_path / "f", data))

    async def read(start: int, end: int | None) -> tuple[int, int, int, bytes]:
        part = await storage.read_range(digest, start, end)
        return part.start, part.end, part.total, b"".join([c async for c in part.chunks])

    assert await read(0, None) == (0, len(data) - 1, len(data), data)
    assert await read(10, 19) == (10, 19, len(data), data[10:20])
    assert await read(10_000, None) == (10_000, len(data) - 1, len(data), data[10_000:])
    assert await read(-5, None) == (len(data) - 5, len(data) - 1, len(data), data[-5:])
    assert (await read(100, 10**9))[3] == data[100:]
    with pytest.raises(RangeNotSatisfiable):
        await read(len(data) + 10, None)
    with pytest.raises(BlobMissing):
        await storage.read_range(digest_of(b"nothing"), 0, None)


async def test_delete_removes_the_object(storage: Storage, tmp_path: Path) -> None:
    digest, _ = await storage.put_file(write(tmp_path / "f", b"short-lived"))
    await storage.delete(digest)
    assert not await storage.exists(digest)
    await storage.delete(digest)  # deleting what is gone is fine


@pytest.mark.s3
async def test_presigned_urls_round_trip_and_a_tampered_signature_is_refused(
    tmp_path: Path,
) -> None:
    """Only S3 has presigned URLs (local storage serves through the API)."""
    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch")
    try:
        url = await store.presign_put("uploads/u1", expires=60, media_type="video/mp4")
        async with httpx.AsyncClient() as http:
            tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
            assert tampered != url
            refused = await http.put(tampered, content=b"evil", headers={"Content-Type": "video/mp4"})
            assert refused.status_code == 403, refused.text
            ok = await http.put(url, content=b"direct bytes", headers={"Content-Type": "video/mp4"})
            assert ok.status_code == 200, ok.text
            # A signed URL is for its own object only.
            other = await http.put(
                url.replace("uploads/u1", "uploads/u2"), content=b"x",
                headers={"Content-Type": "video/mp4"},
            )
            assert other.status_code == 403
            data = b"downloadable" * 100
            digest, _ = await store.put_file(write(tmp_path / "f", data))
            get_url = await store.presign_get(
                digest, expires=60, filename="out.mp4", media_type="video/mp4"
            )
            assert get_url is not None
            got = await http.get(get_url)
            assert got.status_code == 200 and got.content == data
            assert got.headers["content-type"] == "video/mp4"
            bad = await http.get(get_url.replace("X-Amz-Signature=", "X-Amz-Signature=f"))
            assert bad.status_code == 403
        c = await store.client()
        head = await c.head_object(Bucket=store.bucket, Key="blobs/uploads/u1")
        assert head["ContentLength"] == len(b"direct bytes")
    finally:
        await drop_bucket(store)


@pytest.mark.s3
async def test_the_reaper_hook_aborts_stale_multipart_uploads(tmp_path: Path) -> None:
    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch")
    try:
        c = await store.client()
        await c.create_multipart_upload(Bucket=store.bucket, Key=store.key(digest_of(b"k")))
        assert await store.abort_stale_uploads(3600) == 0  # young: a writer may still be busy
        assert await open_uploads(store) == 1
        assert await store.abort_stale_uploads(-60) == 1
        assert await open_uploads(store) == 0
    finally:
        await drop_bucket(store)
