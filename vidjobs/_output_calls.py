"""A job's tasks, playback URLs and downloads, for both clients: `Client` and `AsyncClient`
inherit it.

Every download goes through `_download.Download`: resumed with Range after a broken
transfer, and renamed into place only when its SHA-256 equals the digest the job names.
"""

from __future__ import annotations

import asyncio
import builtins
from pathlib import Path

import httpx
from tenacity import AsyncRetrying, Retrying

from vidjobs import _api, _download, _http
from vidjobs._download import Download
from vidjobs.models import Job, Playback, Task

CHUNK = 1024 * 1024


class OutputCalls:
    http: httpx.Client
    retries: _http.RetryPolicy

    def _send(self, call: _http.Call) -> _http.Answer:
        raise NotImplementedError  # the client's own transport

    def get(self, key: str) -> Job:
        raise NotImplementedError  # the client's own call

    def tasks(self, key: str) -> builtins.list[Task]:
        """The job's tasks, with their status, attempts, dependencies and `reused` flags."""
        return [Task.from_wire(t) for t in self._send(_api.tasks(key)).body["tasks"]]

    def playback(self, key: str) -> Playback:
        """Signed, expiring playback URLs of a succeeded package job."""
        return Playback.from_wire(self._send(_api.playback(key)).body)

    def download(self, key: str, path: str | Path, *, output: str | None = None) -> Path:
        """Save a job's output, or its output named `output`, at `path`. A broken transfer
        resumes where it stopped (Range), and the file appears at `path` only once complete
        and matching the output's digest."""
        job = self.get(key)
        digest = _download.output_digest(job, output)
        return self._fetch(_api.output_path(key, output), digest, Path(path))

    def download_package(self, key: str, directory: str | Path) -> builtins.list[Path]:
        """Save every file of a job's package (manifests and segments) into `directory`,
        each checked against its digest: a local copy that plays as it is."""
        job = self.get(key)
        files = _download.package_files(job)
        into = Path(directory)
        into.mkdir(parents=True, exist_ok=True)
        return [
            self._fetch(_api.package_file_path(key, name), digest, into / name)
            for name, digest in files
        ]

    def _fetch(self, url: str, digest: str | None, path: Path) -> Path:
        dl = Download.start(digest, path)
        for attempt in Retrying(**self.retries.tenacity_kwargs(_http.Call("GET", ""))):
            with attempt:
                try:
                    with self.http.stream(
                        "GET", url, headers=dl.request_headers(), follow_redirects=True
                    ) as resp:
                        if resp.status_code >= 400:
                            resp.read()
                            _http.answer(resp)
                        with dl.open(resp.status_code, resp.headers) as out:
                            for chunk in resp.iter_bytes(CHUNK):
                                out.write(chunk)
                except httpx.TransportError as exc:
                    raise _http.transport_error(exc) from exc
        return dl.finish()


class AsyncOutputCalls:
    http: httpx.AsyncClient
    retries: _http.RetryPolicy

    async def _send(self, call: _http.Call) -> _http.Answer:
        raise NotImplementedError  # the client's own transport

    async def get(self, key: str) -> Job:
        raise NotImplementedError  # the client's own call

    async def tasks(self, key: str) -> builtins.list[Task]:
        return [Task.from_wire(t) for t in (await self._send(_api.tasks(key))).body["tasks"]]

    async def playback(self, key: str) -> Playback:
        return Playback.from_wire((await self._send(_api.playback(key))).body)

    async def download(self, key: str, path: str | Path, *, output: str | None = None) -> Path:
        job = await self.get(key)
        digest = _download.output_digest(job, output)
        return await self._fetch(_api.output_path(key, output), digest, Path(path))

    async def download_package(self, key: str, directory: str | Path) -> builtins.list[Path]:
        job = await self.get(key)
        files = _download.package_files(job)
        into = Path(directory)
        await asyncio.to_thread(into.mkdir, parents=True, exist_ok=True)
        return [
            await self._fetch(_api.package_file_path(key, name), digest, into / name)
            for name, digest in files
        ]

    async def _fetch(self, url: str, digest: str | None, path: Path) -> Path:
        dl = Download.start(digest, path)
        async for attempt in AsyncRetrying(**self.retries.tenacity_kwargs(_http.Call("GET", ""))):
            with attempt:
                try:
                    async with self.http.stream(
                        "GET", url, headers=dl.request_headers(), follow_redirects=True
                    ) as resp:
                        if resp.status_code >= 400:
                            await resp.aread()
                            _http.answer(resp)
                        with dl.open(resp.status_code, resp.headers) as out:
                            async for chunk in resp.aiter_bytes(CHUNK):
                                out.write(chunk)
                except httpx.TransportError as exc:
                    raise _http.transport_error(exc) from exc
        return dl.finish()
