"""Hostile inputs: each fails cleanly as a PermanentError, reads nothing outside, leaks no
server path, and leaves no ffmpeg process behind."""

from __future__ import annotations

import base64
import importlib
import os
import socket
import struct
import subprocess
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError
from workers.ffmpeg import hardened
from workers.ffmpeg.executor import FfmpegExecutor
from workers.ffmpeg.probe import preflight
from workers.ffmpeg.run import Limits

pytestmark = pytest.mark.ffmpeg

# The module, not the `probe` function that `workers.ffmpeg` exports under the same name.
probe_module = importlib.import_module("workers.ffmpeg.probe")


class Canary:
    """A FIFO that records whether anything opened it for reading.

    A writer thread blocks in open() until a reader shows up. If ffmpeg followed a
    reference to the FIFO, the open succeeds while ffmpeg runs; afterwards `close()`
    releases the thread by opening the read end itself, which does not count.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened_by_other = False
        self._releasing = False
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        if not self._releasing:
            self.opened_by_other = True
        os.close(fd)

    def close(self) -> bool:
        self._releasing = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread.join(5)
        os.close(fd)
        return self.opened_by_other


class HttpCanary:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> int:
        self._done.set()
        self._thread.join(5)
        self._sock.close()
        return self.connections


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def hls(target: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n"


def assert_clean(err: PermanentError, *secrets: str) -> None:
    assert err.code == "invalid_input"
    text = f"{err.message} {err.details}"
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("name", ["playlist.m3u8", "playlist.mp4"])
async def test_hls_playlist_is_refused_without_reading_what_it_names(
    tmp_path: Path, ffmpeg_bin: str, name: str
) -> None:
    canary = Canary(tmp_path / "canary.ts")
    target = tmp_path / name
    target.write_text(hls(f"file://{canary.path}") + hls("file:///etc/passwd"))
    with pytest.raises(PermanentError) as err:
        await preflight(target, ffmpeg=ffmpeg_bin)
    assert not canary.close()
    assert "'hls'" in err.value.message
    assert_clean(err.value, str(tmp_path), "/etc/passwd")


def test_the_canary_does_see_an_unguarded_ffmpeg_follow_a_playlist(
    tmp_path: Path, ffmpeg_bin: str
) -> None:
    """Positive control: without our allowlists, ffmpeg's hls demuxer opens the named file."""
    canary = Canary(tmp_path / "canary.ts")
    target = tmp_path / "playlist.m3u8"
    target.write_text(hls(f"file://{canary.path}"))
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "quiet", "-i", str(target)], timeout=30, check=False
    )
    assert canary.close()


def _reaching_playlist(tmp_path: Path) -> tuple[Path, Canary, HttpCanary]:
    """An hls playlist whose AES-128 segment (read through `crypto:`) is a FIFO canary and
    whose next segment is an http canary on 127.0.0.1."""
    http = HttpCanary()
    fifo = Canary(tmp_path / "canary.ts")
    key = base64.b64encode(bytes(16)).decode()
    target = tmp_path / "playlist.m3u8"
    target.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n"
        f'#EXT-X-KEY:METHOD=AES-128,URI="data:application/octet-stream;base64,{key}"\n'
        f"#EXTINF:10,\n{fifo.path.name}\n"
        "#EXT-X-KEY:METHOD=NONE\n"
        f"#EXTINF:10,\n{http.url}/segment.ts\n#EXT-X-ENDLIST\n"
    )
    return target, fifo, http


async def test_the_protocol_allowlist_alone_stops_a_playlist_reaching_past_file(
    tmp_path: Path, ffmpeg_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defense in depth: with a hole opened on purpose in the demuxer allowlist (hls let
    through), `-protocol_whitelist file` on its own still keeps the playlist from opening
    anything but plain files. The playlist names an http canary on 127.0.0.1 and an
    AES-128 segment (read through the `crypto:` protocol) that is a FIFO canary; neither
    may be touched. (ffmpeg's own default for a `file:` input, `file,crypto,data`, stops
    the http fetch but lets `crypto:` open the FIFO: only our allowlist stops that.)"""
    monkeypatch.setattr(probe_module, "FORMAT_WHITELIST", probe_module.FORMAT_WHITELIST + ",hls")
    target, fifo, http = _reaching_playlist(tmp_path)
    try:
        with pytest.raises(PermanentError) as err:
            await preflight(target, ffmpeg=ffmpeg_bin)
    finally:
        opened, connections = fifo.close(), http.close()
    assert not opened, "the crypto: protocol opened the FIFO segment"
    assert connections == 0, "ffmpeg connected to the http canary"
    assert_clean(err.value, str(tmp_path))


def test_ffmpegs_own_inputs_keep_to_the_file_protocol(
    tmp_path: Path, ffmpeg_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same defense on the ffmpeg binary's side: an input made by `hardened.source`, with
    hls let through its demuxer allowlist on purpose, still cannot open the playlist's
    AES-128 segment through `crypto:` (ffmpeg's default for a `file:` input,
    `file,crypto,data`, would open that FIFO) nor fetch its http segment."""
    monkeypatch.setattr(hardened, "FORMAT_WHITELIST", hardened.FORMAT_WHITELIST + ",hls")
    target, fifo, http = _reaching_playlist(tmp_path)
    out = hardened.sink([hardened.source(target)], tmp_path / "out.mp4")
    argv = hardened.compile_argv(out, ffmpeg_bin)
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    finally:
        opened, connections = fifo.close(), http.close()
    assert not opened, "the crypto: protocol opened the FIFO segment"
    assert connections == 0, "ffmpeg connected to the http canary"
    assert run.returncode != 0 and "not on whitelist" in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "out.mp4").exists()


async def test_concat_list_with_absolute_paths_is_refused(tmp_path: Path, ffmpeg_bin: str) -> None:
    canary = Canary(tmp_path / "canary.mp4")
    target = tmp_path / "list.mp4"
    target.write_text(f"ffconcat version 1.0\nfile '{canary.path}'\nfile '/etc/passwd'\n")
    with pytest.raises(PermanentError) as err:
        await preflight(target, ffmpeg=ffmpeg_bin)
    assert not canary.close()
    assert "'concat'" in err.value.message
    assert_clean(err.value, str(tmp_path), "/etc/passwd")


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("notes.mp4", b"hello, I am a text file\n" * 10, "not a readable video"),
        ("empty.mp4", b"", "empty"),
        ("noise.mkv", bytes(range(256)) * 40, "cannot"),
    ],
)
async def test_non_video_files_are_refused(
    tmp_path: Path, ffmpeg_bin: str, name: str, content: bytes, words: str
) -> None:
    target = tmp_path / name
    target.write_bytes(content)
    with pytest.raises(PermanentError) as err:
        await preflight(target, ffmpeg=ffmpeg_bin)
    assert words in err.value.message or "not a video" in err.value.message
    assert_clean(err.value, str(tmp_path))


async def test_png_claiming_a_huge_resolution_is_refused(tmp_path: Path, ffmpeg_bin: str) -> None:
    for size in (60000, 9000):
        target = tmp_path / f"huge{size}.png"
        target.write_bytes(png(size, size))
        with pytest.raises(PermanentError) as err:
            await preflight(target, ffmpeg=ffmpeg_bin, allow_image=True, label="the watermark")
        assert f"{size}x{size}" in err.value.message and "limit" in err.value.message


async def test_video_header_claiming_a_huge_resolution_is_refused(
    tmp_path: Path, ffmpeg_bin: str, clip_maker: Any
) -> None:
    # A rawvideo Matroska file whose PixelWidth/PixelHeight elements are patched to 12000.
    raw = clip_maker(
        "raw.mkv", "-f", "lavfi", "-i", "testsrc2=size=320x256:rate=25:duration=0.2",
        "-c:v", "rawvideo", "-pix_fmt", "gray",
    )  # fmt: skip
    data = bytearray(raw.read_bytes())
    for element, value in ((b"\xb0\x82", 320), (b"\xba\x82", 256)):
        at = data.index(element + value.to_bytes(2, "big"))
        data[at + 2 : at + 4] = (12000).to_bytes(2, "big")
    target = tmp_path / "huge.mkv"
    target.write_bytes(bytes(data))
    with pytest.raises(PermanentError) as err:
        await preflight(target, ffmpeg=ffmpeg_bin)
    assert "12000x12000" in err.value.message


async def test_too_long_is_refused(media: Any, ffmpeg_bin: str) -> None:
    with pytest.raises(PermanentError) as err:
        await preflight(media.clip, Limits(max_duration_ms=1000), ffmpeg=ffmpeg_bin)
    assert "lasts 2 s, over the limit of 1 s" in err.value.message


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (Limits(max_streams=1), "2 streams"),
        (Limits(max_input_bytes=1000), "over the limit of 1000"),
        (Limits(max_pixels=320 * 239), "320x240"),
    ],
)
async def test_other_limits(media: Any, ffmpeg_bin: str, limits: Limits, words: str) -> None:
    with pytest.raises(PermanentError) as err:
        await preflight(media.clip, limits, ffmpeg=ffmpeg_bin)
    assert words in err.value.message


async def test_image_is_not_a_video_source(media: Any, ffmpeg_bin: str) -> None:
    with pytest.raises(PermanentError) as err:
        await preflight(media.logo, ffmpeg=ffmpeg_bin)
    assert "still image" in err.value.message
    probe = await preflight(media.logo, ffmpeg=ffmpeg_bin, allow_image=True)
    assert (probe.width, probe.height, probe.is_image) == (64, 32, True)


async def test_audio_only_file_has_no_video_stream(media: Any, ffmpeg_bin: str) -> None:
    with pytest.raises(PermanentError) as err:
        await preflight(media.wav, ffmpeg=ffmpeg_bin)
    assert "no video stream" in err.value.message


@pytest.mark.parametrize("name", ["a%03d.png", "new\nline.mp4"])
async def test_unsafe_paths_are_refused_before_ffmpeg_runs(
    tmp_path: Path, ffmpeg_bin: str, media: Any, name: str
) -> None:
    target = tmp_path / name
    target.write_bytes(media.clip.read_bytes())
    with pytest.raises(PermanentError) as err:
        await preflight(target, ffmpeg=ffmpeg_bin)
    assert "path ffmpeg must not be given" in err.value.message


@pytest.mark.parametrize("name", ["-i.mp4", "clip.mp4", "../clip.mp4", "http:clip.mp4"])
async def test_relative_paths_are_refused(ffmpeg_bin: str, name: str) -> None:
    with pytest.raises(PermanentError):
        await preflight(Path(name), ffmpeg=ffmpeg_bin)


async def test_odd_absolute_names_are_files_not_options_or_protocols(
    tmp_path: Path, ffmpeg_bin: str, media: Any
) -> None:
    for name in ("-i.mp4", "http:x.mp4", "concat:a.mp4"):
        target = tmp_path / name
        target.write_bytes(media.clip.read_bytes())
        probe = await preflight(target, ffmpeg=ffmpeg_bin)  # read as file:/abs/path
        assert (probe.width, probe.height) == (320, 240)


async def test_fifo_and_directory_are_refused(tmp_path: Path, ffmpeg_bin: str) -> None:
    os.mkfifo(tmp_path / "pipe.mp4")
    for target in (tmp_path / "pipe.mp4", tmp_path):
        with pytest.raises(PermanentError) as err:
            await preflight(target, ffmpeg=ffmpeg_bin)
        assert "not a regular file" in err.value.message


async def test_hostile_inputs_fail_the_job_cleanly_and_the_executor_keeps_working(
    tmp_path: Path, ffmpeg_bin: str, media: Any, make_ctx: Any, procs: Any
) -> None:
    evil = tmp_path / "evil.mp4"
    evil.write_text(hls("file:///etc/passwd"))
    huge = tmp_path / "huge.png"
    huge.write_bytes(png(60000, 60000))
    executor = FfmpegExecutor(ffmpeg=ffmpeg_bin)
    mark = {"op": "watermark", "source": {"digest": "sha256:" + "2" * 64}}
    concat = {"op": "concat", "sources": [{"digest": "sha256:" + "2" * 64}]}
    cases = [
        make_ctx([evil]),
        make_ctx([media.clip, evil], [concat]),
        make_ctx([media.clip, huge], [mark]),
    ]
    for ctx in cases:
        with pytest.raises(PermanentError) as err:
            await executor.execute(ctx)
        assert_clean(err.value, str(tmp_path), "/etc/passwd")
        assert list(ctx.workdir.iterdir()) == []  # no partial output
    assert procs.children() == []
    result = await executor.execute(make_ctx([media.clip], [{"op": "trim", "end": 0.5}]))
    assert result.path.stat().st_size > 0
