"""Filter-graph pieces for `command.py`: fixed filter names, numbers formatted here.

Nothing in this module accepts text from a request. Numbers pass through `num`/`secs`, which
only ever emit digits, a sign and a decimal point, and `Graph.render` checks the finished
graph against a small character set as a last line of defence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from jobs.operations import Crop, Scale, Watermark
from workers.ffmpeg.probe import Probe, invalid

# What a filter graph built here can contain: no quotes, spaces, backslashes or text.
GRAPH_CHARS = re.compile(r"[A-Za-z0-9_:\[\]=,;.\-/()]+")


def num(x: float) -> str:
    """A finite number as plain decimal text (no exponent), the only way numbers enter a graph."""
    if isinstance(x, bool) or not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    if isinstance(x, int):
        return str(x)
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


def secs(ms: int) -> str:
    """Whole milliseconds as exact decimal seconds."""
    if ms < 0:
        raise ValueError("negative time")
    return f"{ms // 1000}.{ms % 1000:03d}"


def even(x: float) -> int:
    """Nearest even integer (halves round up), at least 2: what yuv420p needs."""
    return max(2, int(x / 2 + 0.5) * 2)


class Graph:
    """A filter graph assembled from fixed filter names and formatted numbers only."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.count = 0

    def label(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def chain(self, src: str, filters: list[str], prefix: str = "v") -> str:
        if not filters:
            return src
        out = self.label(prefix)
        self.parts.append(f"[{src}]{','.join(filters)}[{out}]")
        return out

    def render(self) -> str:
        graph = ";".join(self.parts)
        if not GRAPH_CHARS.fullmatch(graph):
            raise ValueError(f"refusing a filter graph with unexpected characters: {graph!r}")
        return graph


def scaled(w: int, h: int, op: Scale, video_out: bool) -> tuple[int, int]:
    """Target size: one side given keeps the aspect ratio; yuv420p outputs get even sides."""
    if op.width is not None and op.height is not None:
        nw, nh = float(op.width), float(op.height)
    elif op.width is not None:
        nw, nh = float(op.width), h * op.width / w
    else:
        assert op.height is not None
        nw, nh = w * op.height / h, float(op.height)
    if video_out:
        return even(nw), even(nh)
    return max(1, round(nw)), max(1, round(nh))


def atempo_chain(factor: float) -> list[float]:
    """atempo takes 0.5..2 per instance; larger changes are a product of several."""
    parts: list[float] = []
    while factor > 2:
        parts.append(2.0)
        factor /= 2
    while factor < 0.5:
        parts.append(0.5)
        factor /= 0.5
    return [*parts, factor]


def concat_inputs(
    g: Graph, probes: Sequence[Probe], w: int, h: int, want_audio: bool
) -> tuple[str, str | None]:
    """The concat filter (never the concat demuxer) over every main input, each scaled,
    padded and resampled to w x h, the first input's frame rate and one audio layout."""
    fps = num(probes[0].fps or 25.0)
    pads: list[str] = []
    for i, p in enumerate(probes):
        pads.append(
            g.chain(
                f"{i}:{p.video_index}",
                [
                    f"scale={w}:{h}:force_original_aspect_ratio=decrease",
                    f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2",
                    "setsar=1",
                    f"fps={fps}",
                ],
                "c",
            )
        )
        if not want_audio:
            continue
        if p.has_audio:
            pads.append(
                g.chain(
                    f"{i}:a:0",
                    [
                        "aresample=48000",
                        "aformat=sample_fmts=fltp:channel_layouts=stereo",
                    ],
                    "c",
                )
            )
        elif p.duration_ms is None:
            raise invalid(f"concat input {i + 1} has no audio track and no known duration")
        else:
            label = g.label("c")
            g.parts.append(f"anullsrc=r=48000:cl=stereo,atrim=end={secs(p.duration_ms)}[{label}]")
            pads.append(label)
    outs = "[vcat][acat]" if want_audio else "[vcat]"
    streams = "".join(f"[{x}]" for x in pads)
    g.parts.append(f"{streams}concat=n={len(probes)}:v=1:a={int(want_audio)}{outs}")
    return "vcat", ("acat" if want_audio else None)


def crop_size(op: Crop, w: int, h: int, video_out: bool) -> tuple[int, int]:
    """The frame size after a fixed crop; refuses a crop that does not fit in w x h."""
    assert op.width is not None and op.height is not None
    if op.x + op.width > w or op.y + op.height > h:
        raise invalid(
            f"crop {op.width}x{op.height} at ({op.x},{op.y}) does not fit in the {w}x{h} frame"
        )
    cut = 2 if video_out else 1  # yuv420p needs even sides: drop an odd pixel
    return op.width - op.width % cut, op.height - op.height % cut


def watermark_box(op: Watermark, mw: int, mh: int, w: int, h: int) -> tuple[int, int, int, int]:
    """Where an mw x mh watermark lands on a w x h frame: (x, y, width, height) in pixels.
    Refuses a watermark that would fall entirely outside the frame (nothing of it shown)."""
    ww, wh = mw, mh
    if op.width is not None:
        ww, wh = op.width, max(1, round(mh * op.width / mw))
    m = op.margin
    pos = op.position.value
    x = (w - ww) // 2 if pos == "center" else (m if pos.endswith("left") else w - ww - m)
    y = (h - wh) // 2 if pos == "center" else (m if pos.startswith("top") else h - wh - m)
    if x >= w or y >= h or x + ww <= 0 or y + wh <= 0:
        raise invalid(
            f"the {ww}x{wh} watermark at {pos} with margin {m} falls entirely outside the "
            f"{w}x{h} frame"
        )
    return x, y, ww, wh


def overlay(g: Graph, base: str, op: Watermark, index: int, wp: Probe, w: int, h: int) -> str:
    """Overlay the watermark image at a corner (with margin) or the centre, in pixels."""
    if not wp.width or not wp.height:
        raise invalid("the watermark has no readable frame size")
    x, y, ww, wh = watermark_box(op, wp.width, wp.height, w, h)
    filters: list[str] = []
    if op.width is not None:
        filters.append(f"scale={ww}:{wh}")
    if op.opacity < 1:
        filters += ["format=rgba", f"colorchannelmixer=aa={num(op.opacity)}"]
    mark = g.chain(f"{index}:{wp.video_index}", filters, "w")
    out = g.label("v")
    g.parts.append(f"[{base}][{mark}]overlay=x={x}:y={y}[{out}]")
    return out
