"""The filter chains of one edit command as they are built, operation by operation, with
the frame size so far (`command.build_command` drives it). Filter text comes only from
numbers and enums (`graph.py`, `filters.py`); `Graph.render` checks the result."""

from __future__ import annotations

from typing import Any

from jobs.errors import PermanentError
from jobs.media_ops import Deinterlace, Fade, Loudnorm, Pad, SubtitleMode
from jobs.operations import (
    Crop,
    Flip,
    FlipDirection,
    Fps,
    Rotate,
    Scale,
    Speed,
    Subtitles,
    Volume,
    Watermark,
)
from jobs.outputs import Container
from workers.ffmpeg import filters, loudness
from workers.ffmpeg.avprobe import MediaInfo
from workers.ffmpeg.cropdetect import Detected
from workers.ffmpeg.graph import Graph, atempo_chain, crop_size, num, overlay, scaled
from workers.ffmpeg.probe import Probe
from workers.ffmpeg.subfile import PLAIN_PATH, SubtitleFile


class Chain:
    """The video and audio filter chains being built, and the frame size so far."""

    def __init__(self, g: Graph, w: int, h: int, video_out: bool, fps: float | None) -> None:
        self.g, self.w, self.h, self.video_out = g, w, h, video_out
        self.fps = fps  # the frame rate so far, kept through speed changes
        self.v = ""
        self.a: str | None = None
        self.a_is_label = False
        self.vf: list[str] = []
        self.af: list[str] = []
        self.video = True  # False: no video in this command (audio output, or measuring)
        self.info: MediaInfo | None = None
        self.measure = False  # building the loudness measuring pass
        self.measured: loudness.Measured | None = None
        self.audio_done = False  # measuring: nothing after loudnorm matters
        self.notes = filters.Notes()
        self.subtitles: SubtitleFile | None = None
        self.detected: Detected | None = None  # what cropdetect found, for "crop": "auto"

    def apply(self, op: Any, duration_ms: int | None) -> None:
        self._audio(op, duration_ms)
        if not self.video or self.measure:
            return
        if isinstance(op, Scale):
            self.w, self.h = scaled(self.w, self.h, op, self.video_out)
            self.vf += [f"scale={self.w}:{self.h}", "setsar=1"]
        elif isinstance(op, Crop) and op.crop == "auto":
            found = self.detected
            if found is None:
                self.notes.video["crop"] = "auto: no picture area detected, not cropped"
                return
            self.notes.video["crop"] = f"auto: {found.width}x{found.height} at {found.x},{found.y}"
            self.w, self.h = found.width, found.height
            self.vf.append(f"crop={found.width}:{found.height}:{found.x}:{found.y}")
        elif isinstance(op, Crop):
            self.w, self.h = crop_size(op, self.w, self.h, self.video_out)
            self.vf.append(f"crop={self.w}:{self.h}:{op.x}:{op.y}")
        elif isinstance(op, Fps):
            self.vf.append(f"fps={num(op.fps)}")
            self.fps = op.fps
        elif isinstance(op, Rotate):
            self.vf += _ROTATE[op.degrees]
            if op.degrees != 180:
                self.w, self.h = self.h, self.w
        elif isinstance(op, Flip):
            self.vf.append("hflip" if op.direction is FlipDirection.HORIZONTAL else "vflip")
        elif isinstance(op, Speed):
            self.vf.append(f"setpts=PTS/{num(op.factor)}")
            if self.fps:  # resample to the frame rate we had: drop or repeat frames
                self.vf.append(f"fps={num(self.fps)}")
        elif isinstance(op, Deinterlace):
            self.vf += filters.deinterlace(op, self.info, self.notes)
        elif isinstance(op, Pad):
            pad, self.w, self.h = filters.pad(op, self.w, self.h, self.video_out)
            self.vf += pad
        elif isinstance(op, Fade) and op.video:
            self.vf += filters.fades(op, duration_ms, "video")
        elif isinstance(op, Subtitles) and op.mode is SubtitleMode.BURN:
            if self.subtitles is None or not PLAIN_PATH.match(str(self.subtitles.path)):
                raise PermanentError("burned subtitles need their file", code="invalid_spec")
            self.vf.append(f"ass=filename={self.subtitles.path}")
        # trim and concat shape the inputs; mute drops the audio map

    def _audio(self, op: Any, duration_ms: int | None) -> None:
        if self.audio_done:
            return
        if isinstance(op, Speed):
            self.af += [f"atempo={num(f)}" for f in atempo_chain(op.factor)]
        elif isinstance(op, Volume):
            self.af.append(f"volume={num(op.db)}dB")
        elif isinstance(op, Fade) and op.audio:
            self.af += filters.fades(op, duration_ms, "audio")
        elif isinstance(op, Loudnorm):
            if self.measure:
                self.af.append(loudness.measure_filter(op))
                self.audio_done = True
            else:
                assert self.measured is not None
                self.af.append(loudness.apply_filter(op, self.measured))

    def watermark(self, op: Watermark, index: int, probe: Probe) -> None:
        self.v = overlay(self.g, self.g.chain(self.v, self.vf), op, index, probe, self.w, self.h)
        self.vf = []

    def finish(self, container: Container, want_audio: bool) -> tuple[str, str | None]:
        """The rendered graph (video ends in [vout]) and what to map for audio, if any."""
        g = self.g
        if not self.video:
            if self.v.startswith("vcat"):  # measuring a concat: its video goes nowhere
                g.parts.append(f"[{self.v}]nullsink")
        elif container is Container.GIF:
            src = g.chain(self.v, self.vf)
            g.parts.append(
                f"[{src}]split[gs1][gs2];[gs1]palettegen[gpal];[gs2][gpal]paletteuse[vout]"
            )
        else:
            if self.video_out and (self.w % 2 or self.h % 2):
                self.w, self.h = self.w - self.w % 2, self.h - self.h % 2
                self.vf.insert(len(self.vf) - 1 if self.vf else 0, f"crop={self.w}:{self.h}:0:0")
            g.parts.append(f"[{self.v}]{','.join(self.vf or ['null'])}[vout]")
        audio_map: str | None = None
        if want_audio and self.a is not None:
            if self.af:
                audio_map = f"[{g.chain(self.a, self.af, 'a')}]"
            else:
                audio_map = f"[{self.a}]" if self.a_is_label else self.a
        return (g.render() if g.parts else ""), audio_map


_ROTATE = {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}
