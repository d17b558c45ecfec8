"""The client's package download refuses file names that could leave its folder, against
scripted answers (httpx.MockTransport): the names come from the server, and a client must
not trust them with its file system."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

import vidjobs
from vidjobs import errors

KEY = "vj1_" + "b" * 64
BODY = b"#EXTM3U\n"
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


def serving(files: dict[str, object]) -> tuple[vidjobs.Client, list[str]]:
    asked: list[str] = []
    job = {"key": KEY, "status": "succeeded", "spec": {}, "output": {"package": {"files": files}}}

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == f"/v1/jobs/{KEY}":
            return httpx.Response(200, json=job)
        return httpx.Response(200, content=BODY)

    return vidjobs.Client("http://vj.test", "vjt_x", transport=httpx.MockTransport(handler)), asked


def test_a_package_is_saved_file_by_file_and_checked_by_digest(tmp_path: Path) -> None:
    vj, asked = serving({"master.m3u8": {"digest": DIGEST}, "v0.m3u8": {"digest": DIGEST}})
    saved = vj.download_package(KEY, tmp_path / "pkg")
    assert [p.name for p in saved] == ["master.m3u8", "v0.m3u8"]
    assert all(p.read_bytes() == BODY for p in saved)
    assert asked[1:] == [f"/v1/jobs/{KEY}/package/master.m3u8", f"/v1/jobs/{KEY}/package/v0.m3u8"]


@pytest.mark.parametrize("name", ["../escape.m3u8", "/etc/passwd", "a/b.ts", ".hidden", "..", "x" * 200])
def test_a_file_name_that_is_not_one_plain_segment_writes_nothing(tmp_path: Path, name: str) -> None:
    vj, asked = serving({"master.m3u8": {"digest": DIGEST}, name: {"digest": DIGEST}})
    with pytest.raises(errors.VidjobsError, match="not a plain file name") as err:
        vj.download_package(KEY, tmp_path / "pkg")
    assert err.value.code == "bad_package"
    assert len(asked) == 1  # only the job was read: no file was fetched
    assert not (tmp_path / "pkg").exists() and not list(tmp_path.rglob("*escape*"))


def test_a_file_whose_bytes_do_not_match_its_digest_is_not_kept(tmp_path: Path) -> None:
    vj, _ = serving({"master.m3u8": {"digest": "sha256:" + "0" * 64}})
    with pytest.raises(errors.VidjobsError) as err:
        vj.download_package(KEY, tmp_path / "pkg")
    assert err.value.code == "digest_mismatch"
    assert list((tmp_path / "pkg").iterdir()) == []


def test_a_job_without_a_package_is_not_found() -> None:
    job = {"key": KEY, "status": "succeeded", "spec": {}, "output": {"digest": DIGEST}}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=job))
    with vidjobs.Client("http://vj.test", "vjt_x", transport=transport) as vj:
        with pytest.raises(errors.NotFound, match="has no package"):
            vj.download_package(KEY, "unused")
        with pytest.raises(errors.NotFound, match="no output named 'poster'"):
            vj.download(KEY, "unused", output="poster")
