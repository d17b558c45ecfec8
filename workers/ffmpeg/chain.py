"""The filter chains of one edit command as they are built, operation by operation, with
the frame size so far (`command.build_command` drives it). Filters (`graph.F`) are made only
from numbers and enums (`graph.py`, `filters.py`) and applied to ffmpeg-python streams;
`hardened.compile_argv` checks the compiled graph."""

from __future__ import annotations

from typing import Any

import ffmpeg

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
from workers.ffmpeg.graph import F, apply, atempo_chain, crop_size, f, num, overlay, scaled
from workers.ffmpeg.probe import Probe
from workers.ffmpeg.subfile import PLAIN_PATH, SubtitleFile


class Chain:
    """The video and audio filter chains being built, and the frame size so far."""

    def __init__(self, w: int, h: int, video_out: bool, fps: float | None) -> None:
        self.w, self.h, self.video_out = w, h, video_out
        self.fps = fps  # the frame rate so far, kept through speed changes
        self.v: Any = None  # ffmpeg-python streams: the video and audio so far
        self.a: Any = None
        self.vf: list[F] = []  # filters still to apply to them
        self.af: list[F] = []
        self.video = True  # False: no video in this command (audio output, or measuring)
        self.info: MediaInfo | None = None
        self.measure = False  # building the loudness measuring pass
        self.measured: loudness.Measured | None = None
        self.audio_done = False  # measuring: nothing after loudnorm matters (or: no audio)
        self.notes = filters.Notes()
        self.subtitles: SubtitleFile | None = None
        self.detected: Detected | None = None  # what cropdetect found, for "crop": "auto"

    def apply(self, op: Any, duration_ms: int | None) -> None:
        self._audio(op, duration_ms)
        if not self.video or self.measure:
            return
        if isinstance(op, Scale):
            self.w, self.h = scaled(self.w, self.h, op, self.video_out)
            self.vf += [f("scale", self.w, self.h), f("setsar", 1)]
        elif isinstance(op, Crop) and op.crop == "auto":
            found = self.detected
            if found is None:
                self.notes.video["crop"] = "auto: no picture area detected, not cropped"
                return
            self.notes.video["crop"] = f"auto: {found.width}x{found.height} at {found.x},{found.y}"
            self.w, self.h = found.width, found.height
            self.vf.append(f("crop", found.width, found.height, found.x, found.y))
        elif isinstance(op, Crop):
            self.w, self.h = crop_size(op, self.w, self.h, self.video_out)
            self.vf.append(f("crop", self.w, self.h, op.x, op.y))
        elif isinstance(op, Fps):
            self.vf.append(f("fps", num(op.fps)))
            self.fps = op.fps
        elif isinstance(op, Rotate):
            self.vf += _ROTATE[op.degrees]
            if op.degrees != 180:
                self.w, self.h = self.h, self.w
        elif isinstance(op, Flip):
            self.vf.append(f("hflip" if op.direction is FlipDirection.HORIZONTAL else "vflip"))
        elif isinstance(op, Speed):
            self.vf.append(f("setpts", f"PTS/{num(op.factor)}"))
            if self.fps:  # resample to the frame rate we had: drop or repeat frames
                self.vf.append(f("fps", num(self.fps)))
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
            self.vf.append(f("ass", filename=str(self.subtitles.path)))
        # trim and concat shape the inputs; mute drops the audio map

    def _audio(self, op: Any, duration_ms: int | None) -> None:
        if self.audio_done:
            return
        if isinstance(op, Speed):
            self.af += [f("atempo", num(x)) for x in atempo_chain(op.factor)]
        elif isinstance(op, Volume):
            self.af.append(f("volume", f"{num(op.db)}dB"))
        elif isinstance(op, Fade) and op.audio:
            self.af += filters.fades(op, duration_ms, "audio")
        elif isinstance(op, Loudnorm):
            if self.measure:
                self.af.append(loudness.measure_filter(op))
                self.audio_done = True
            else:
                assert self.measured is not None
                self.af.append(loudness.apply_filter(op, self.measured))

    def watermark(self, op: Watermark, mark: Any, probe: Probe) -> None:
        """Overlay the watermark stream `mark` (the input's video stream)."""
        self.v = overlay(apply(self.v, self.vf), mark, op, probe, self.w, self.h)
        self.vf = []

    def finish(self, container: Container, want_audio: bool) -> tuple[Any, Any]:
        """The video stream to map (None without video) and the audio stream, if any."""
        video = None
        if not self.video:
            pass  # measuring a concat: its video pad is sent to a null output by the caller
        elif container is Container.GIF:
            split = apply(self.v, self.vf).split()
            video = ffmpeg.filter([split[1], split[0].filter("palettegen")], "paletteuse")
        else:
            if self.video_out and (self.w % 2 or self.h % 2):
                self.w, self.h = self.w - self.w % 2, self.h - self.h % 2
                at = len(self.vf) - 1 if self.vf else 0
                self.vf.insert(at, f("crop", self.w, self.h, 0, 0))
            video = apply(self.v, self.vf or [f("null")])
        audio = None
        if want_audio and self.a is not None:
            audio = apply(self.a, self.af)
        return video, audio


_ROTATE = {
    90: [f("transpose", "clock")],
    180: [f("hflip"), f("vflip")],
    270: [f("transpose", "cclock")],
}
