"""Filter pieces for the delivery operations and output formats: deinterlace, pad, fades,
bit depth, HDR tone mapping (and whether HDR10 metadata is kept), audio layout and rate.
Numbers and enums in, `graph.F` out.

Like `graph.py`, nothing here takes text from a request: names come from enums or from the
allowlisted tables in `avprobe.py`, numbers pass through `num`/`secs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.encoding import TEN_BIT_CODECS
from jobs.media_ops import Deinterlace, Fade, Pad
from jobs.outputs import Output
from workers.ffmpeg.avprobe import MediaInfo
from workers.ffmpeg.graph import F, f, secs
from workers.ffmpeg.hdr10 import ENCODER_PARAMS, Hdr10
from workers.ffmpeg.hdr10 import encoder_params as hdr10_params
from workers.ffmpeg.probe import invalid

TONEMAP_FILTERS = frozenset({"zscale", "tonemap"})
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
_ZSCALE_TRANSFER = {"pq": "smpte2084", "hlg": "arib-std-b67"}


@dataclass
class Notes:
    """What the command does beyond the spec's literal words, for the job's output view."""

    video: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {"video_processing": dict(self.video)} if self.video else {}


def deinterlace(op: Deinterlace, info: MediaInfo | None, notes: Notes) -> list[F]:
    """bwdif/yadif at one frame per frame. With `auto`, a source whose field order says
    progressive is left alone, and otherwise only frames flagged interlaced are touched."""
    if op.auto and info is not None and info.field_order == "progressive":
        notes.video["deinterlace"] = "skipped: the source is progressive"
        return []
    deint = "interlaced" if op.auto else "all"
    order = info.field_order if info is not None else None
    notes.video["deinterlace"] = f"{op.filter.value} (source field order: {order or 'unknown'})"
    return [f(op.filter.value, mode="send_frame", parity="auto", deint=deint)]


def pad(op: Pad, w: int, h: int, video_out: bool) -> tuple[list[F], int, int]:
    """Centre the frame on a larger canvas; returns the filters and the new size."""
    if op.aspect is not None:
        a, b = op.aspect.ratio
        if w * b < h * a:  # too narrow: pillarbox
            nw, nh = -(-h * a // b), h
        else:  # too wide: letterbox
            nw, nh = w, -(-w * b // a)
    else:
        assert op.width is not None and op.height is not None
        nw, nh = op.width, op.height
        if nw < w or nh < h:
            raise invalid(f"pad to {nw}x{nh} is smaller than the {w}x{h} frame")
    if video_out:  # yuv420p: even sides, rounding up so the picture still fits
        nw, nh = nw + nw % 2, nh + nh % 2
    x, y = (nw - w) // 2, (nh - h) // 2
    if video_out:
        x, y = x - x % 2, y - y % 2
    return [f("pad", nw, nh, x, y, color=op.color.value), f("setsar", 1)], nw, nh


def fades(op: Fade, duration_ms: int | None, kind: str) -> list[F]:
    """`fade` (video) or `afade` (audio) in and out; fading out needs the timeline's length."""
    name = "fade" if kind == "video" else "afade"
    out: list[F] = []
    if op.fade_in:
        out.append(f(name, t="in", st=0, d=secs(op.fade_in)))
    if op.fade_out:
        if duration_ms is None:
            raise invalid("fade_out needs a source whose duration is known")
        start = max(0, duration_ms - op.fade_out)
        out.append(f(name, t="out", st=secs(start), d=secs(min(op.fade_out, duration_ms))))
    return out


def output_depth(output: Output, info: MediaInfo | None) -> int:
    """10 when asked for, or when the source has more than 8 bits and the codec keeps them."""
    if output.bit_depth is not None:
        return output.bit_depth
    codec = output.video_codec.value if output.video_codec else ""
    deep = info is not None and (info.bit_depth or 8) > 8
    return 10 if deep and codec in TEN_BIT_CODECS else 8


def colour(
    info: MediaInfo | None, depth: int, filters: frozenset[str] | None, notes: Notes
) -> tuple[list[F], list[str]]:
    """Filters that bring the picture to the output's depth and range, and the colour tags
    to write. HDR into 8 bits is tone-mapped (zscale + tonemap) when the binary has them."""
    pix_fmt = "yuv420p10le" if depth == 10 else "yuv420p"
    notes_v = notes.video
    hdr = info.hdr if info is not None else None
    if info is None:
        return [f("format", pix_fmt)], []
    if hdr is not None and depth == 8:
        if filters is not None and not TONEMAP_FILTERS <= filters:
            notes_v["tone_mapping"] = (
                f"none: this ffmpeg lacks zscale/tonemap, so the {hdr} source was converted "
                "to 8 bits without tone mapping (colours will look washed out)"
            )
            return [f("format", pix_fmt)], _tags(info)
        notes_v["tone_mapping"] = f"{hdr} HDR to SDR bt709 (zscale + tonemap hable)"
        notes_v["bit_depth"] = 8
        tin = _ZSCALE_TRANSFER[hdr]
        chain = [
            f("zscale", tin=tin, min="bt2020nc", pin="bt2020", t="linear", npl=100),
            f("format", "gbrpf32le"),
            f("zscale", p="bt709"),
            f("tonemap", tonemap="hable", desat=0),
            f("zscale", t="bt709", m="bt709", r="tv"),
            f("format", pix_fmt),
        ]
        tags = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
        return chain, [*tags, "-color_range", "tv"]
    if (info.bit_depth or 8) > 8 or hdr is not None:
        notes_v["bit_depth"] = depth
        if hdr is not None:
            notes_v["hdr"] = f"{hdr} kept, colour tags passed through"
    return [f("format", pix_fmt)], _tags(info)


def hdr10(info: MediaInfo | None, depth: int, venc: str | None, notes: Notes) -> Hdr10 | None:
    """The source's HDR10 static metadata to hand to encoder `venc` (None: none), and the
    sentence for the view. Only a PQ source encoded to 10 bits keeps it: an 8-bit SDR
    (tone-mapped) output must not claim an HDR mastering display."""
    meta = info.hdr10 if info is not None else None
    if info is None or meta is None:
        return None
    hdr, notes_v = info.hdr, notes.video
    fixed = f" ({'; '.join(meta.fixes)})" if meta.fixes else ""
    if hdr != "pq":
        notes_v["hdr10"] = f"not passed: HDR10 static metadata is for PQ sources{fixed}"
        return None
    if depth != 10:
        notes_v["hdr10"] = f"dropped: the output is 8-bit SDR{fixed}"
        return None
    if meta.mastering is None and meta.light is None:
        notes_v["hdr10"] = f"none passed{fixed}"
        return None
    if venc not in ENCODER_PARAMS:
        notes_v["hdr10"] = (
            f"not passed: {venc or 'this encoder'} takes no HDR10 static metadata from this "
            f"ffmpeg (hevc with libx265 and av1 with libsvtav1 do){fixed}"
        )
        return None
    what = [name for name, v in (("mastering display", meta.mastering),
                                 ("MaxCLL/MaxFALL", meta.light)) if v is not None]  # fmt: skip
    params = ", ".join(p.split("=", 1)[1] for p in hdr10_params(meta, venc))
    notes_v["hdr10"] = f"{' and '.join(what)} passed to {venc} ({params}){fixed}"
    return meta


def _tags(info: MediaInfo) -> list[str]:
    """The source's colour tags for the output (names from avprobe's allowlists)."""
    args: list[str] = []
    for option, value in (
        ("-color_primaries", info.color_primaries),
        ("-color_trc", info.color_transfer),
        ("-colorspace", info.color_matrix),
        ("-color_range", info.color_range),
    ):
        if value is not None:
            args += [option, value]
    return args


def audio_out(output: Output, loudnorm: bool, info: MediaInfo | None) -> list[F]:
    """Sample rate and channel layout of the output. 5.1 to stereo uses the ITU-R BS.775
    coefficients (centre and surrounds at -3 dB, LFE dropped), normalised against clipping."""
    chain: list[F] = []
    rate = output.audio_sample_rate or (48000 if loudnorm else None)  # loudnorm runs at 192k
    channels: int | None = output.audio_channels
    if channels is None and loudnorm and info is not None:
        channels = info.audio_channels  # loudnorm's output has no layout: name it again
    layout = _LAYOUTS.get(channels or 0)
    if rate is not None or layout is not None:
        opts: dict[str, str | int] = {"osr": rate} if rate is not None else {}
        if layout == "stereo" or layout == "mono":
            opts |= {"clev": "0.707", "slev": "0.707", "lfe_mix_level": 0}
        chain.append(f("aresample", **opts))
    if layout is not None:
        chain.append(f("aformat", channel_layouts=layout))
    return chain
