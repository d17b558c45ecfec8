"""Pure command builders for renditions, packages and sprite sheets (probes in, argv out).

Every command is built with ffmpeg-python's graph API (`filter` / `output` compile to an
argument list, never a shell line) on `hardened.source` inputs (file protocol, demuxer
allowlist); a rendition is a `hardened.sink` compiled by `hardened.compile_argv`, packages
and sprites (segment-pattern outputs) get `-nostdin`, quiet logs and progress from `harden`.
Only numbers formatted by `graph.num` and names made here reach a filter or a muxer option.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from jobs.packaging.models import PackageFormat
from workers.ffmpeg import hardened
from workers.ffmpeg.graph import even, num
from workers.ffmpeg.hardened import GLOBAL_ARGS, PROGRESS_ARGS
from workers.ffmpeg.probe import Probe, invalid

AUDIO_RATE = 48_000
AUDIO_CODECS = "mp4a.40.2"  # AAC-LC, what ffmpeg's aac encoder writes
HLS_MASTER = "master.m3u8"
DASH_MANIFEST = "manifest.mpd"

# H.264 levels: (level_idc, max frame size in macroblocks, max macroblocks/s, High-profile
# max bitrate kbit/s), ITU-T H.264 table A-1. The lowest level that fits is signalled.
_LEVELS = (
    (30, 1620, 40_500, 12_500),
    (31, 3600, 108_000, 17_500),
    (32, 5120, 216_000, 25_000),
    (40, 8192, 245_760, 25_000),
    (41, 8192, 245_760, 62_500),
    (42, 8704, 522_240, 62_500),
    (50, 22_080, 589_824, 168_750),
    (51, 36_864, 983_040, 300_000),
    (52, 36_864, 2_073_600, 300_000),
)


def h264_level(width: int, height: int, fps: float, maxrate_kbps: int) -> int:
    """The level_idc (e.g. 31 for 3.1) a High-profile stream of this size and rate needs."""
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    for level, max_fs, max_mbps, max_br in _LEVELS:
        if mbs <= max_fs and mbs * fps <= max_mbps and maxrate_kbps <= max_br:
            return level
    raise invalid(f"a {width}x{height} rendition at {fps:g} fps is beyond H.264 level 5.2")


def harden(stream: Any, exe: str, *, progress: bool = True) -> list[str]:
    """Compile an ffmpeg-python output node whose file names are segment patterns (which
    `hardened.sink` refuses) and add the global hardening options; the inputs are
    `hardened.source`s. Single-file outputs go through `hardened.compile_argv`."""
    argv: list[str] = ffmpeg.compile(stream, cmd=exe)  # -y comes with GLOBAL_ARGS
    extra = [*GLOBAL_ARGS, *(PROGRESS_ARGS if progress else ())]
    return [argv[0], *extra, *argv[1:]]


@dataclass(frozen=True)
class RenditionPlan:
    argv: list[str]
    width: int
    height: int
    fps: float
    gop: int
    level: int
    has_audio: bool

    @property
    def codecs(self) -> str:
        """RFC 6381 codec string: High profile (0x64), no constraint flags, the level."""
        video = f"avc1.6400{self.level:02x}"
        return f"{video},{AUDIO_CODECS}" if self.has_audio else video


@dataclass(frozen=True)
class RungVideo:
    """A rung's picture and encoder settings, shared by a one-pass rendition and every chunk
    of a chunked one (`workers.ffmpeg.rungchunks`): the same frame rate, size, GOP, level
    and forced keyframes, so chunked and one-pass rungs have the same segment boundaries."""

    width: int
    height: int
    fps: float
    sar: Fraction
    gop: int
    level: int
    video_kbps: int
    segment_seconds: int

    def filters(self, video: Any) -> Any:
        """The source's video at the constant rung frame rate, scaled, in yuv420p."""
        sar = self.sar
        return (
            video.filter("fps", num(self.fps))
            .filter("scale", self.width, self.height)
            .filter(
                "setsar",
                f"{sar.numerator}/{sar.denominator}",
                max=max(sar.numerator, sar.denominator, 100),
            )
            .filter("format", "yuv420p")
        )

    def options(self) -> dict[str, Any]:
        """H.264 High with a keyframe exactly every `segment_seconds` (fixed GOP, forced
        keyframes, scene-cut keyframes off)."""
        level, kbps = self.level, self.video_kbps
        return {
            "c:v": "libx264",
            "preset": "veryfast",
            "profile:v": "high",
            "level:v": f"{level // 10}.{level % 10}",
            "b:v": f"{kbps}k",
            "maxrate": f"{kbps * 11 // 10}k",
            "bufsize": f"{kbps * 2}k",
            "g": self.gop,
            "keyint_min": self.gop,
            "sc_threshold": 0,
            "x264-params": "scenecut=0:open-gop=0",
            "force_key_frames": f"expr:gte(t,n_forced*{self.segment_seconds})",
        }

    @property
    def video_codecs(self) -> str:
        """RFC 6381 codec string: High profile (0x64), no constraint flags, the level."""
        return f"avc1.6400{self.level:02x}"


def rung_video(probe: Probe, height: int, video_kbps: int, segment_seconds: int) -> RungVideo:
    """The rung of `height` px of this source, checked (no upscale, a usable frame rate)."""
    if probe.video_index is None or not probe.width or not probe.height:
        raise invalid("a rendition needs a video stream with a known frame size")
    if height > probe.height:
        raise invalid(f"a {height} px rendition of a {probe.height} px source would upscale")
    fps = round(probe.fps or 0.0, 3)
    if not 1 <= fps <= 120:
        raise invalid("the source's frame rate is unknown or outside 1-120 fps")
    width = even(probe.width * height / probe.height)
    # The sample aspect ratio that keeps the source's picture aspect exactly (an even width
    # rounds it a little), so every rung of a DASH adaptation set has the same aspect.
    sar = Fraction(probe.width * height, probe.height * width)
    gop = max(1, round(segment_seconds * fps))
    level = h264_level(width, height, fps, video_kbps * 11 // 10)
    return RungVideo(width, height, fps, sar, gop, level, video_kbps, segment_seconds)


def rendition_command(
    exe: str,
    source: Path,
    probe: Probe,
    out: Path,
    *,
    height: int,
    video_kbps: int,
    audio_kbps: int,
    segment_seconds: int,
) -> RenditionPlan:
    """One rung: H.264 High at a constant frame rate with a keyframe exactly every
    `segment_seconds` (fixed GOP, forced keyframes, scene-cut keyframes off), so every rung
    of a ladder has the same segment boundaries; AAC stereo at 48 kHz when the source has
    audio. Written as a faststart MP4 that the package task segments without re-encoding."""
    rung = rung_video(probe, height, video_kbps, segment_seconds)
    inp = hardened.source(source, probe.demuxer)
    streams = [rung.filters(inp[str(probe.video_index)])]
    opts: dict[str, Any] = {**rung.options(), "movflags": "+faststart", "format": "mp4"}
    if probe.has_audio:
        streams.append(inp["a:0"])
        opts.update(audio_options(audio_kbps))
    argv = hardened.compile_argv(hardened.sink(streams, out, **opts), exe, progress=True)
    return RenditionPlan(
        argv, rung.width, rung.height, rung.fps, rung.gop, rung.level, probe.has_audio
    )


def audio_options(audio_kbps: int) -> dict[str, Any]:
    """A rung's audio: AAC-LC stereo at 48 kHz."""
    return {"c:a": "aac", "b:a": f"{audio_kbps}k", "ar": AUDIO_RATE, "ac": 2}


def package_command(
    exe: str, renditions: Sequence[Path], has_audio: bool, fmt: PackageFormat, outdir: Path,
    segment_seconds: int,
) -> list[str]:  # fmt: skip
    """Segment the renditions (stream copy: their keyframes are the segment boundaries).

    hls: MPEG-TS segments `stream_<i>_<n>.ts` and media playlists `stream_<i>.m3u8`, the
    audio muxed into every variant. dash and cmaf: one set of fMP4 segments (`init-<r>.m4s`,
    `chunk-<r>-<n>.m4s`) with the audio as its own adaptation set (the first rung's audio),
    `manifest.mpd`, and for cmaf also HLS media playlists `media_<r>.m3u8` over the same
    segments. The HLS master playlist is written by `manifests.write_master`."""
    inputs = [hardened.source(p, "mov") for p in renditions]
    if fmt is PackageFormat.HLS:
        streams: list[Any] = []
        for inp in inputs:
            streams += [inp["v:0"], *([inp["a:0"]] if has_audio else [])]
        vmap = " ".join(f"v:{i},a:{i}" if has_audio else f"v:{i}" for i in range(len(inputs)))
        node = ffmpeg.output(
            *streams,
            str(outdir / "stream_%v.m3u8"),
            c="copy",
            f="hls",
            hls_time=segment_seconds,
            hls_playlist_type="vod",
            hls_segment_type="mpegts",
            hls_flags="independent_segments",
            hls_segment_filename=str(outdir / "stream_%v_%05d.ts"),
            var_stream_map=vmap,
        )
        return harden(node, exe)
    streams = [inp["v:0"] for inp in inputs] + ([inputs[0]["a:0"]] if has_audio else [])
    sets = "id=0,streams=v id=1,streams=a" if has_audio else "id=0,streams=v"
    opts: dict[str, Any] = {
        "c": "copy",
        "f": "dash",
        "seg_duration": segment_seconds,
        "use_template": 1,
        "use_timeline": 1,
        "adaptation_sets": sets,
        "init_seg_name": "init-$RepresentationID$.m4s",
        "media_seg_name": "chunk-$RepresentationID$-$Number%05d$.m4s",
        "map_metadata": -1,
    }
    if fmt is PackageFormat.CMAF:
        opts["hls_playlist"] = 1
    return harden(ffmpeg.output(*streams, str(outdir / DASH_MANIFEST), **opts), exe)


@dataclass(frozen=True)
class SpritePlan:
    argv: list[str]
    thumb_width: int
    thumb_height: int
    count: int  # thumbnails in all
    columns: int
    rows: int
    sheets: int

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows


def sprites_command(
    exe: str, source: Path, probe: Probe, outdir: Path, *, interval: int, width: int,
    columns: int, rows: int,
) -> SpritePlan:  # fmt: skip
    """One frame every `interval` s, scaled to `width` (height keeps the aspect, even),
    tiled `columns` x `rows` a sheet into `sprite-<n>.jpg` (the last sheet may be part full)."""
    if probe.video_index is None or not probe.width or not probe.height:
        raise invalid("thumbnails need a video stream with a known frame size")
    if not probe.duration_ms:
        raise invalid("thumbnails need a source with a known duration")
    thumb_h = even(width * probe.height / probe.width)
    count = max(1, math.ceil(probe.duration_ms / (interval * 1000)))
    per_sheet = columns * rows
    sheets = math.ceil(count / per_sheet)
    video = (
        hardened.source(source, probe.demuxer)[str(probe.video_index)]
        .filter("fps", f"1/{interval}")
        .filter("scale", width, thumb_h)
        .filter("setsar", 1)
        .filter("tile", f"{columns}x{rows}")
    )
    node = ffmpeg.output(
        video, str(outdir / "sprite-%03d.jpg"), f="image2", q="4", frames=sheets,
        map_metadata=-1,
    )  # fmt: skip
    return SpritePlan(harden(node, exe), width, thumb_h, count, columns, rows, sheets)
