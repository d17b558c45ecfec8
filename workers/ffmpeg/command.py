"""The canonical edit spec as one ffmpeg argument list: a pure function, no shell, no I/O.

Every value that reaches the filter graph is a number or an enum of the (re-validated) spec,
formatted here; paths only ever appear as separate `-i file:/abs/path` arguments. Sizes are
computed in Python rather than left to ffmpeg expressions, so the builder knows the exact
output frame size and can refuse a crop outside the frame before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg as ffmpeg_python
from pydantic import ValidationError

from jobs.errors import PermanentError
from jobs.media_ops import Loudnorm, SubtitleMode
from jobs.operations import Concat, Mute, Speed, Thumbnail, Trim, Watermark
from jobs.outputs import AUDIO_CONTAINERS, AudioCodec, Container, VideoCodec
from jobs.spec import EditRequest
from workers.ffmpeg import filters, hardened, loudness
from workers.ffmpeg.avprobe import MediaInfo
from workers.ffmpeg.binary import encoder_args, video_encoder
from workers.ffmpeg.chain import Chain
from workers.ffmpeg.cropdetect import Detected
from workers.ffmpeg.graph import concat_inputs, f, secs
from workers.ffmpeg.probe import Probe, invalid
from workers.ffmpeg.subfile import SubtitleFile

VIDEO_CONTAINERS = frozenset({Container.MP4, Container.MOV, Container.MKV, Container.WEBM})
MEDIA_TYPES: dict[Container, str] = {
    Container.MP4: "video/mp4",
    Container.MOV: "video/quicktime",
    Container.MKV: "video/x-matroska",
    Container.WEBM: "video/webm",
    Container.GIF: "image/gif",
    Container.JPG: "image/jpeg",
    Container.PNG: "image/png",
    Container.MP3: "audio/mpeg",
    Container.M4A: "audio/mp4",
    Container.OGG: "audio/ogg",
    Container.WAV: "audio/wav",
    Container.FLAC: "audio/flac",
}
AUDIO_ONLY_TYPES = {Container.WEBM: "audio/webm", Container.MKV: "audio/x-matroska"}


@dataclass(frozen=True)
class Window:
    """One chunk of a chunked edit: seek the input to `seek` seconds, take exactly `frames`
    frames with their timestamps passed through, from 0, and no audio (the audio task makes
    the whole audio once). Without `start_pts` the seek is accurate (ffmpeg drops what it
    decodes before `seek`); with it, the seek drops nothing and timestamps are copied, and a
    `trim` drops the frames before tick `start_pts` (`keyframes.Chunk`)."""

    seek: float
    frames: int
    start_pts: int | None = None

    def input_options(self) -> Mapping[str, str | None]:
        if not self.seek:
            return {}
        at = f"{self.seek:.6f}"
        return {"ss": at} if self.start_pts is None else {"noaccurate_seek": None, "ss": at}


@dataclass(frozen=True)
class Command:
    argv: list[str]
    output: Path
    media_type: str
    expected_duration_ms: int | None  # of the output timeline, for progress
    width: int | None  # the exact frame size the output will have
    height: int | None
    stream_copy: bool = False
    first_pass: list[str] | None = None  # two-pass encodes: run this first (writes stats)
    notes: dict[str, Any] = field(default_factory=dict)  # what was done, for the job's view
    audio_only: bool = False


def parse_spec(spec: Mapping[str, Any]) -> EditRequest:
    """Re-validate a stored canonical spec: every bound and cross-field rule is checked again."""
    try:
        # The canonical form writes an open trim end as `end_ms: null`; the request model
        # only takes `*_ms` keys with a number, so drop the nulls before re-validating.
        ops = [
            {k: v for k, v in op.items() if not (k.endswith("_ms") and v is None)}
            for op in spec["operations"]
        ]
        data = {"source": spec["source"], "operations": ops, "output": spec["output"]}
        return EditRequest.model_validate(data)
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise PermanentError(
            f"the stored job spec is not a valid edit: {exc}", code="invalid_spec"
        ) from None


def _timeline(
    req: EditRequest, probes: Sequence[Probe], mains: int, before: list[int | None] | None = None
) -> int | None:
    """Duration of the edited timeline in ms (None if a source's duration is unknown);
    refuses trims and thumbnails that start past the end. `before` gets the duration each
    operation sees."""
    durations = [p.duration_ms for p in probes[:mains]]
    total = None if None in durations else sum(d for d in durations if d is not None)
    for op in req.operations:
        if before is not None:
            before.append(total)
        if isinstance(op, Trim):
            if total is not None and op.start >= total:
                raise invalid(
                    f"trim starts at {secs(op.start)} s but the video lasts {secs(total)} s"
                )
            end = op.end if op.end is not None else total
            if end is not None and total is not None:
                end = min(end, total)
            total = None if end is None else end - op.start
        elif isinstance(op, Speed) and total is not None:
            total = round(total / op.factor)
        elif isinstance(op, Thumbnail) and total is not None and op.at >= total:
            raise invalid(
                f"thumbnail time {secs(op.at)} s is past the end of the video ({secs(total)} s)"
            )
    return total


def _can_copy(req: EditRequest, probe: Probe, want_audio: bool) -> bool:
    """A fast trim may stream-copy when nothing else needs decoding and codecs already match."""
    ops = req.operations
    if req.output.container not in VIDEO_CONTAINERS or probe.is_image:
        return False
    if not all(isinstance(op, Trim | Mute) for op in ops):
        return False
    if probe.video_codec != req.output.video_codec:
        return False
    audio = next((s for s in probe.streams if s.kind == "audio"), None)
    return not (want_audio and audio is not None and audio.codec != req.output.audio_codec)


def build_command(
    ffmpeg: str,
    spec: Mapping[str, Any],
    inputs: Sequence[Path],
    probes: Sequence[Probe],
    output: Path,
    encoders: frozenset[str],
    *,
    media: Sequence[MediaInfo | None] = (),
    filters_have: frozenset[str] | None = None,
    measured: loudness.Measured | None = None,
    measure: bool = False,
    stats: Path | None = None,
    subtitles: SubtitleFile | None = None,
    detected: Detected | None = None,
    window: Window | None = None,
    threads: int | None = None,
) -> Command:
    """The whole ffmpeg invocation for one job: argv plus what the output will be.

    `inputs` and `probes` follow the spec's input order: main source, concat sources, then
    the watermark; `media` the same (stream details from `avprobe`, where read). `encoders`
    and `filters_have` are what the binary has. A `loudnorm` edit takes two calls: with
    `measure=True` the command measures loudness (argv writes nothing), then with the
    `measured` result the real command. A two-pass encode needs `stats`, a file prefix in
    the job's private workdir; the command's `first_pass` is then run before `argv`.
    A `window` makes the video of one chunk only (`Window`); `threads` caps the encoder's.
    """
    req = parse_spec(spec)
    ops = list(req.operations)
    container = req.output.container
    concat = ops[0] if ops and isinstance(ops[0], Concat) else None
    watermark = next((op for op in ops if isinstance(op, Watermark)), None)
    mains = 1 + (len(concat.sources) if concat else 0)
    if len(inputs) != mains + (watermark is not None) or len(probes) != len(inputs):
        raise PermanentError("the job's inputs do not match its spec", code="invalid_spec")
    audio_only = container in AUDIO_CONTAINERS or req.output.video_codec is VideoCodec.NONE
    video_out = container in VIDEO_CONTAINERS and not audio_only
    want_audio = window is None and (
        (video_out or audio_only)
        and req.output.audio_codec not in (None, AudioCodec.NONE)
        and not any(isinstance(op, Mute) for op in ops)
    )
    norm = next((op for op in ops if isinstance(op, Loudnorm)), None)
    if norm is not None and not measure and measured is None and want_audio:
        raise PermanentError("loudnorm needs its measuring pass first", code="invalid_spec")
    before: list[int | None] = []
    expected = _timeline(req, probes, mains, before)
    trim = next((op for op in ops if isinstance(op, Trim)), None)
    thumb = next((op for op in ops if isinstance(op, Thumbnail)), None)
    speed = next((op.factor for op in ops if isinstance(op, Speed)), 1.0)
    if window is not None and (concat or trim or thumb or measure or audio_only):
        # a chunk is frames [first, end) of one whole source (`jobs.chunking.blockers`)
        raise PermanentError("a chunk is of one whole video source", code="invalid_spec")
    media_type = MEDIA_TYPES[container]
    if audio_only:
        media_type = AUDIO_ONLY_TYPES.get(container, media_type)
    main = probes[0]
    info = media[0] if media else None
    if norm is not None:
        at = before[ops.index(norm)]
        if at is not None and at < loudness.MIN_MS:
            raise invalid(
                f"'loudnorm' needs at least {secs(loudness.MIN_MS)} s of audio to measure, "
                f"but the timeline there lasts {secs(at)} s"
            )
    if (audio_only or norm is not None) and not main.has_audio:
        what = "an audio output" if audio_only else "'loudnorm'"
        raise invalid(f"{what} needs audio, but the source has no audio track")

    copy = trim is not None and trim.fast and concat is None and not audio_only
    if copy and trim is not None and _can_copy(req, main, want_audio):
        argv = _stream_copy(ffmpeg, inputs[0], main, trim, want_audio, container, output)
        return Command(argv, output, media_type, expected, main.width, main.height, True)

    w, h = (0, 0) if audio_only else display_size(main, concat is not None, video_out)
    chain = Chain(w, h, video_out, main.fps)
    chain.info, chain.measure, chain.measured = info, measure, measured
    chain.video = not audio_only and not (measure and concat is None)
    chain.audio_done = not want_audio  # a chunk's, a muted edit's: no audio chain to build
    start_pts = window.start_pts if window is not None and window.seek else None
    if concat is None:
        start = trim.start if trim else 0
        if thumb is not None:
            start += round(thumb.at * speed)  # seek straight to the frame: nothing before it
        seek = _seek_options(start, trim.end if trim else None)
        if window is not None:
            seek = window.input_options()
        inp = hardened.source(inputs[0], main.demuxer, **seek)
        chain.v, chain.a = inp[str(main.video_index)], (inp["a:0"] if main.has_audio else None)
        if start_pts is not None:  # timestamps copied: drop what the seek put before the chunk
            chain.vf.append(f("trim", start_pts=start_pts))
    else:
        sources = [hardened.source(inputs[i], probes[i].demuxer) for i in range(mains)]
        chain.v, chain.a = concat_inputs(sources, probes[:mains], w, h, want_audio)
        if trim is not None:
            cut = {"start": secs(trim.start)}
            cut |= {"end": secs(trim.end)} if trim.end is not None else {}
            chain.vf += [f("trim", **cut), f("setpts", "PTS-STARTPTS")]
            chain.af += [f("atrim", **cut), f("asetpts", "PTS-STARTPTS")]
    soft = subtitles is not None and subtitles.mode is SubtitleMode.SOFT and not measure
    chain.subtitles, chain.detected = subtitles, detected
    for i, op in enumerate(ops):
        if isinstance(op, Watermark):
            if chain.video and not measure:
                wp = probes[mains]
                mark = hardened.source(inputs[mains], wp.demuxer)[str(wp.video_index)]
                chain.watermark(op, mark, wp)
        elif isinstance(op, Thumbnail):
            if concat is not None:  # single inputs seek to the frame instead (above)
                chain.vf += [f("trim", start=secs(op.at)), f("setpts", "PTS-STARTPTS")]
        else:
            chain.apply(op, before[i])
    depth = filters.output_depth(req.output, info)
    tone, tags = filters.colour(info, depth, filters_have, chain.notes) if video_out else ([], [])
    venc = video_encoder(req.output, encoders) if video_out else None
    hdr10 = filters.hdr10(info, depth, venc, chain.notes) if video_out else None
    chain.vf += tone
    if window is not None:
        chain.vf.append(f("setpts", "PTS-STARTPTS"))  # each chunk from 0: the concat adds them up
    if want_audio and not measure:
        chain.af += filters.audio_out(req.output, norm is not None, info)
    video, audio = chain.finish(container, want_audio)
    notes = chain.notes.as_metadata()
    if measure:
        if audio is None:
            raise invalid("'loudnorm' needs audio, but the output keeps none")
        out = hardened.null_sink([audio], vn=None, sn=None)
        if concat is not None:  # the concat's video pad must go somewhere: a null output
            out = ffmpeg_python.merge_outputs(out, hardened.null_sink([chain.v]))
        argv = hardened.compile_argv(out, ffmpeg, loglevel="info")
        return Command(argv, output, media_type, expected, None, None, audio_only=audio_only)
    if audio_only and audio is None:
        raise invalid("an audio output needs audio, but none is left")
    pix_fmt = "yuv420p10le" if depth == 10 else "yuv420p"
    first_pass = None
    if req.output.two_pass and video_out:
        if stats is None:
            raise PermanentError("a two-pass encode needs a stats path", code="invalid_spec")
        first = encoder_args(
            req.output, encoders, False, pix_fmt=pix_fmt, two_pass=(1, str(stats)), hdr10=hdr10
        )
        first_out = hardened.null_sink([video], **hardened.options([*first, *tags]))
        first_pass = hardened.compile_argv(first_out, ffmpeg)
    passes = (2, str(stats)) if first_pass is not None else None
    streams = [s for s in (video, audio) if s is not None]
    codec = encoder_args(
        req.output, encoders, audio is not None, pix_fmt=pix_fmt, two_pass=passes, hdr10=hdr10
    )
    extra: list[str] = []
    if soft and subtitles is not None:
        streams.append(hardened.subtitle_source(subtitles.path, subtitles.demuxer)["0"])
        extra += ["-c:s", subtitles.codec]
        if subtitles.language is not None:
            extra += ["-metadata:s:s:0", f"language={subtitles.language}"]
    extra += ["-threads", str(threads)] if threads else []
    if window is not None:  # exactly the chunk's frames, their timestamps kept, no audio
        extra += ["-frames:v", str(window.frames), "-fps_mode", "passthrough", "-sn"]
        extra += [] if "-an" in codec else ["-an"]  # the encoder's options say it already
    options = hardened.options([*codec, *tags, *extra])
    out = hardened.sink(streams, output, **options, **output_options(container))
    return Command(
        hardened.compile_argv(out, ffmpeg, progress=True, copyts=start_pts is not None),
        output,
        media_type,
        None if thumb or window else expected,  # a chunk's progress: done or not
        None if audio_only else chain.w,
        None if audio_only else chain.h,
        first_pass=first_pass,
        notes=notes,
        audio_only=audio_only,
    )


def _stream_copy(
    ffmpeg: str,
    source: Path,
    main: Probe,
    trim: Trim,
    want_audio: bool,
    container: Container,
    output: Path,
) -> list[str]:
    """A keyframe-cut trim that copies the streams, as an ffmpeg-python graph."""
    inp = hardened.source(source, main.demuxer, **_seek_options(trim.start, trim.end))
    streams = [inp[str(main.video_index)]]
    options: dict[str, Any] = {"c": "copy", "avoid_negative_ts": "make_zero"}
    if want_audio and main.has_audio:
        streams.append(inp["a:0"])
    else:
        options["an"] = None
    out = hardened.sink(streams, output, **options, **output_options(container))
    return hardened.compile_argv(out, ffmpeg, progress=True)


def output_options(container: Container) -> dict[str, str]:
    """Muxer options: the format is always forced from our own allowlist, never guessed."""
    muxer = {
        Container.MP4: "mp4",
        Container.MOV: "mov",
        Container.MKV: "matroska",
        Container.WEBM: "webm",
        Container.GIF: "gif",
        Container.JPG: "image2",
        Container.PNG: "image2",
        Container.MP3: "mp3",
        Container.M4A: "mp4",
        Container.OGG: "ogg",
        Container.WAV: "wav",
        Container.FLAC: "flac",
    }[container]
    options = {"format": muxer}
    if container in (Container.MP4, Container.MOV, Container.M4A):
        options["movflags"] = "+faststart"
    if muxer == "image2":
        options["update"] = "1"  # one file, never a numbered sequence
    return options


def _seek_options(start_ms: int, end_ms: int | None) -> Mapping[str, str | None]:
    """Input-side seeking: with re-encoding ffmpeg decodes from the keyframe before `start`
    and drops frames before it, so the cut is frame-accurate; with `-c copy` it is a fast
    keyframe cut."""
    options = {"ss": secs(start_ms)} if start_ms else {}
    return options | ({"to": secs(end_ms)} if end_ms is not None else {})


def display_size(main: Probe, concat: bool, video_out: bool) -> tuple[int, int]:
    """The frame size the filter chain starts from (concat inputs are scaled to it)."""
    if not main.width or not main.height:
        raise invalid("the source has no readable frame size")
    if concat and video_out:
        return main.width - main.width % 2, main.height - main.height % 2
    return main.width, main.height
