"""Filter-graph pieces for `command.py`: fixed filter names, numbers formatted here.

Nothing in this module accepts text from a request. Numbers pass through `num`/`secs`, which
only ever emit digits, a sign and a decimal point. Filters are `F` values applied to
ffmpeg-python streams; `hardened.compile_argv` checks the compiled graph against
`GRAPH_CHARS` as a last line of defence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ffmpeg

from jobs.operations import Crop, Scale, Watermark
from workers.ffmpeg.probe import Probe, invalid

# What a filter graph built here can contain: no quotes, spaces, backslashes or text ("+"
# for the timestamp sums of our own expressions, e.g. a rung chunk's `PTS+2.000000/TB`).
GRAPH_CHARS = re.compile(r"[A-Za-z0-9_:\[\]=,;.\-+/()]+")


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


@dataclass(frozen=True)
class F:
    """One filter: a fixed name, positional options and named options (numbers formatted
    here, names from enums). `to` adds it to an ffmpeg-python stream."""

    name: str
    args: tuple[str | int, ...] = ()
    kwargs: tuple[tuple[str, str | int], ...] = ()

    def to(self, stream: Any) -> Any:
        return stream.filter(self.name, *self.args, **dict(self.kwargs))


def f(name: str, *args: str | int, **kwargs: str | int) -> F:
    """A filter for `F.to` (ffmpeg-python writes named options sorted by name)."""
    return F(name, args, tuple(kwargs.items()))


def apply(stream: Any, filters: Sequence[F]) -> Any:
    """`stream` through `filters` in order."""
    for one in filters:
        stream = one.to(stream)
    return stream


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
    inputs: Sequence[Any], probes: Sequence[Probe], w: int, h: int, want_audio: bool
) -> tuple[Any, Any | None]:
    """The concat filter (never the concat demuxer) over every main input (ffmpeg-python
    input nodes), each scaled, padded and resampled to w x h, the first input's frame rate
    and one audio layout. Returns the video and audio streams."""
    fps = num(probes[0].fps or 25.0)
    pads: list[Any] = []
    for i, (inp, p) in enumerate(zip(inputs, probes, strict=True)):
        video = [
            f("scale", w, h, force_original_aspect_ratio="decrease"),
            f("pad", w, h, "(ow-iw)/2", "(oh-ih)/2"),
            f("setsar", 1),
            f("fps", fps),
        ]
        pads.append(apply(inp[str(p.video_index)], video))
        if not want_audio:
            continue
        if p.has_audio:
            audio = [
                f("aresample", 48000),
                f("aformat", sample_fmts="fltp", channel_layouts="stereo"),
            ]
            pads.append(apply(inp["a:0"], audio))
        elif p.duration_ms is None:
            raise invalid(f"concat input {i + 1} has no audio track and no known duration")
        else:
            pads.append(silence(p.duration_ms))
    joined = ffmpeg.concat(*pads, v=1, a=int(want_audio)).node
    return joined[0], (joined[1] if want_audio else None)


def silence(duration_ms: int) -> Any:
    """`anullsrc` (48 kHz stereo) cut to `duration_ms`: ffmpeg-python has no source filters,
    so the node is made here with no inputs."""
    node = _SourceNode("anullsrc", r=48000, cl="stereo")
    return node.stream().filter("atrim", end=secs(duration_ms))


class _SourceNode(ffmpeg.nodes.FilterNode):  # type: ignore[misc]
    def __init__(self, name: str, **kwargs: str | int) -> None:
        ffmpeg.nodes.Node.__init__(
            self,
            stream_spec=None,
            name=name,
            incoming_stream_types={ffmpeg.nodes.FilterableStream},
            outgoing_stream_type=ffmpeg.nodes.FilterableStream,
            min_inputs=0,
            max_inputs=0,
            args=[],
            kwargs=kwargs,
        )


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


def overlay(base: Any, mark: Any, op: Watermark, wp: Probe, w: int, h: int) -> Any:
    """Overlay the watermark image stream `mark` at a corner (with margin) or the centre."""
    if not wp.width or not wp.height:
        raise invalid("the watermark has no readable frame size")
    x, y, ww, wh = watermark_box(op, wp.width, wp.height, w, h)
    filters: list[F] = []
    if op.width is not None:
        filters.append(f("scale", ww, wh))
    if op.opacity < 1:
        filters += [f("format", "rgba"), f("colorchannelmixer", aa=num(op.opacity))]
    return ffmpeg.filter([base, apply(mark, filters)], "overlay", x=x, y=y)
