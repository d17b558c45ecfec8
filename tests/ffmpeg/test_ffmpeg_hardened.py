"""`hardened`: ffmpeg-python graphs compiled to argv with the hardening every command needs,
and graphs that skip it refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg
import pytest

from jobs.errors import PermanentError
from workers.ffmpeg import hardened
from workers.ffmpeg.probe import FORMAT_WHITELIST
from workers.ffmpeg.run import Limits, run_ffmpeg

pytestmark = pytest.mark.ffmpeg


def test_a_graph_compiles_to_hardened_argv() -> None:
    inp = hardened.source(Path("/in/a.mp4"), "mov", ss="1.000")
    scaled = inp["0"].filter("scale", 160, 120)
    argv = hardened.compile_argv(hardened.sink([scaled], Path("/out/b.mp4"), format="mp4"), "ff")
    assert argv[:7] == ["ff", "-nostdin", "-hide_banner", "-y", "-loglevel", "error", "-nostats"]
    i = argv.index("-i")
    assert argv[i + 1] == "file:/in/a.mp4"
    assert argv[argv.index("-format_whitelist") + 1] == FORMAT_WHITELIST
    assert argv.index("-protocol_whitelist") < i and argv[argv.index("-f") + 1] == "mov"
    assert argv[argv.index("-filter_complex") + 1] == "[0:0]scale=160:120[s0]"
    assert argv[-3:] == ["-protocol_whitelist", "file", "file:/out/b.mp4"]
    assert argv[argv.index("-map_metadata") + 1] == "-1"
    assert "-progress" not in argv
    assert hardened.compile_argv(hardened.null_sink([inp]), "ff", progress=True)[7:9] == [
        "-progress",
        "pipe:1",
    ]


@pytest.mark.parametrize("path", ["relative.mp4", "/a/%03d.png", "/a/new\nline.mp4"])
def test_paths_ffmpeg_must_not_get_are_refused(path: str) -> None:
    with pytest.raises(PermanentError, match="must not be given"):
        hardened.source(Path(path))
    with pytest.raises(PermanentError, match="must not be given"):
        hardened.sink([hardened.source(Path("/a.mp4"))], Path(path))


def test_demuxers_off_the_allowlist_are_refused() -> None:
    with pytest.raises(PermanentError, match="'hls' is not allowed"):
        hardened.source(Path("/a.m3u8"), "hls")


def test_unhardened_inputs_outputs_and_graph_text_are_refused() -> None:
    raw = ffmpeg.input("/etc/passwd")
    with pytest.raises(ValueError, match=r"hardened\.source"):
        hardened.compile_argv(hardened.null_sink([raw]), "ff")
    inp = hardened.source(Path("/a.mp4"))
    with pytest.raises(ValueError, match=r"hardened\.sink"):
        hardened.compile_argv(ffmpeg.output(inp, "http://example.com/x.mp4"), "ff")
    text = inp["0"].filter("drawtext", text="a'b:c")  # request text never belongs in a graph
    with pytest.raises(ValueError, match="unexpected characters"):
        hardened.compile_argv(hardened.null_sink([text]), "ff")


async def test_the_compiled_argv_runs(media: Any, ffmpeg_bin: str, tmp_path: Path) -> None:
    out = tmp_path / "small.mp4"
    inp = hardened.source(media.clip, "mov")
    video = inp["0"].filter("scale", 160, 120)
    graph = hardened.sink([video, inp["a:0"]], out, format="mp4", **{"c:v": "libx264"})
    result = await run_ffmpeg(hardened.compile_argv(graph, ffmpeg_bin), Limits(), timeout_s=60)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
