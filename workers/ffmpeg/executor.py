"""The real executor: preflight every input, run one ffmpeg command, verify what it wrote.

ffmpeg writes to a fresh file inside the attempt's private workdir; the runner moves the
verified result into the blob store and only a fenced completion points the job at it, so
no partial output is ever visible (DESIGN.md invariant 8). A failed run deletes its file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from jobs.canonical import canonical_output
from jobs.errors import InvalidRequest, PermanentError
from jobs.media_ops import Loudnorm
from jobs.operations import Crop, Trim
from jobs.outputs import (
    ALLOWED_AUDIO,
    ALLOWED_VIDEO,
    AUDIO_CONTAINERS,
    Container,
    Output,
    VideoCodec,
)
from jobs.spec import EditRequest, output_request
from workers.executor import ExecutionContext, ExecutionResult
from workers.ffmpeg import cropdetect, hardened, loudness, subfile
from workers.ffmpeg.binary import (
    AUDIO_ENCODERS,
    IMAGE_ENCODERS,
    VIDEO_ENCODERS,
    encoders,
    filters,
    find_ffmpeg,
    pick_encoder,
)
from workers.ffmpeg.command import (
    MEDIA_TYPES,
    Command,
    Window,
    build_command,
    parse_spec,
)
from workers.ffmpeg.loudness import Measured
from workers.ffmpeg.probe import Probe, probe
from workers.ffmpeg.rendition import FfmpegTask
from workers.ffmpeg.run import raise_for_exit, run_ffmpeg

log = logging.getLogger(__name__)


class FfmpegExecutor(FfmpegTask):
    """Runs edit jobs with ffmpeg under `limits`. `ffmpeg` defaults to `find_ffmpeg()`."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        return await self.encode(ctx, ctx.job.spec)

    async def encode(
        self, ctx: ExecutionContext, spec: Mapping[str, Any], window: Window | None = None
    ) -> ExecutionResult:
        """Run the edit `spec` (a canonical edit with its `inputs`): the whole job, or with
        `window` one chunk of it (`workers.ffmpeg.chunked`)."""
        exe = self.ffmpeg
        req = parse_spec(spec)
        refs = req.inputs()
        if len(ctx.inputs) != len(refs):
            raise PermanentError("the job's input files do not match its spec", code="invalid_spec")
        audio_out = is_audio_only(req)
        probes: list[Probe] = []
        media_inputs: list[Path] = []
        subs_source: Path | None = None
        digests = [str(i.get("digest") or "") for i in spec.get("inputs", [])]
        for i, (path, ref) in enumerate(zip(ctx.inputs, refs, strict=True)):
            if not ref.is_media:
                subs_source = path  # not media: read (strictly) below, never probed
                continue
            media_inputs.append(path)
            digest = digests[i] if i < len(digests) else ""
            found = await self.preflight(
                path,
                digest,
                allow_image=ref.image_ok,
                allow_audio=audio_out and i == 0,
                label=ref.label,
            )
            probes.append(found)
        main = probes[0]
        info = main.info  # read by the same probe: colour, fields, audio layout
        have = await asyncio.to_thread(encoders, exe)
        have_filters = await asyncio.to_thread(filters, exe)
        container = Container(spec["output"]["container"])
        out = ctx.workdir / f"output-{secrets.token_hex(8)}.{container.value}"
        stats = ctx.workdir / f"passlog-{secrets.token_hex(8)}"
        redact = {str(ctx.workdir): "<workdir>", exe: "ffmpeg"}
        redact.update({str(p): f"<input{i}>" for i, p in enumerate(ctx.inputs)})
        detected = await self._detect_crop(req, media_inputs[0], main, exe)
        subs_file = None
        if subs_source is not None:
            subs_file = await asyncio.to_thread(subfile.prepare, subs_source, req, ctx.workdir)
        build = partial(
            build_command,
            exe,
            spec,
            media_inputs,
            probes,
            out,
            have,
            media=[info] if info is not None else [],
            filters_have=have_filters,
            stats=stats,
            subtitles=subs_file,
            detected=detected,
            window=window,
            threads=self.limits.encoder_threads,
        )
        ctx.report_progress(0.0)
        norm = next((op for op in req.operations if isinstance(op, Loudnorm)), None)
        measured = None
        try:
            if norm is not None and window is None:  # a chunk has no audio to measure
                measured = await self._measure(build(measure=True).argv, redact)
            cmd = build(measured=measured)
            if cmd.first_pass is not None:
                first = await run_ffmpeg(
                    cmd.first_pass, self.limits, timeout_s=self.limits.timeout_s
                )
                raise_for_exit(first, redact, self.limits)
            result = await run_ffmpeg(
                cmd.argv,
                self.limits,
                timeout_s=self.limits.timeout_s,
                expected_duration_ms=cmd.expected_duration_ms,
                on_progress=ctx.report_progress,
            )
            raise_for_exit(result, redact, self.limits)
            made = await self._verify(cmd, exe)
            extra = await self._output_loudness(cmd, made, exe, redact, norm, measured)
        except BaseException:
            out.unlink(missing_ok=True)  # never leave a partial file behind
            raise
        finally:
            for leftover in ctx.workdir.glob(f"{stats.name}*"):
                leftover.unlink(missing_ok=True)
            if subs_file is not None:
                subs_file.path.unlink(missing_ok=True)
        ctx.report_progress(1.0)
        metadata = {
            **output_metadata(made),
            **cmd.notes,
            **extra,
        }
        if subs_file is not None:
            metadata["subtitles"] = {
                "mode": subs_file.mode.value,
                "codec": subs_file.codec,
                "cues": subs_file.cues,
            }
        if cmd.audio_only:
            metadata["audio_codec"] = next(
                (s.codec for s in made.streams if s.kind == "audio"), None
            )
        return ExecutionResult(path=out, media_type=cmd.media_type, metadata=metadata)

    async def _detect_crop(
        self, req: EditRequest, source: Path, main: Probe, exe: str
    ) -> cropdetect.Detected | None:
        """For `"crop": "auto"`: run cropdetect over the (trimmed) source."""
        if not any(isinstance(op, Crop) and op.crop == "auto" for op in req.operations):
            return None
        if not main.width or not main.height or main.video_index is None:
            raise PermanentError("crop detection needs a video stream", code="invalid_input")
        trim = next((op for op in req.operations if isinstance(op, Trim)), None)
        start, end = (trim.start, trim.end) if trim else (0, None)
        argv = cropdetect.argv(exe, source, main, start, end)
        result = await run_ffmpeg(
            argv, self.limits, timeout_s=self.limits.timeout_s, keep_lines=cropdetect.KEEP_LINES
        )
        raise_for_exit(result, {str(source): "<input0>", exe: "ffmpeg"}, self.limits)
        return cropdetect.parse(result.stderr, main.width, main.height)

    async def _measure(self, argv: list[str], redact: Mapping[str, str]) -> Measured:
        """Run a loudnorm measuring pass and read its result strictly."""
        result = await run_ffmpeg(
            argv, self.limits, timeout_s=self.limits.timeout_s, keep_lines=loudness.KEEP_LINES
        )
        raise_for_exit(result, redact, self.limits)
        return loudness.parse_measurement(result.stderr)

    async def _output_loudness(
        self,
        cmd: Command,
        made: Probe,
        exe: str,
        redact: Mapping[str, str],
        norm: Loudnorm | None,
        measured: Measured | None,
    ) -> dict[str, Any]:
        """For a loudnorm job: the target, the source's and the output's integrated loudness
        (measured again on the file written)."""
        if norm is None or measured is None:
            return {}
        audio = hardened.source(cmd.output, made.demuxer)["a:0"]
        out = hardened.null_sink([loudness.measure_filter().to(audio)])
        after = await self._measure(hardened.compile_argv(out, exe, loglevel="info"), redact)
        return {
            "loudness": {
                "target_lufs": norm.target_lufs,
                "true_peak_db": norm.true_peak_db,
                "lra": norm.lra,
                "source_integrated_lufs": measured.input_i,
                "integrated_lufs": after.input_i,
                "true_peak_dbtp": after.input_tp,
                "loudness_range_lu": after.input_lra,
            }
        }

    async def _verify(self, cmd: Command, exe: str) -> Probe:
        """The output must exist, be readable media with a video stream (an audio stream
        for audio outputs), of the planned size."""
        if not cmd.output.is_file() or cmd.output.stat().st_size == 0:
            raise PermanentError(
                "ffmpeg produced no output (is a trim or thumbnail time past the end?)",
                code="invalid_input",
            )
        limits = dataclasses.replace(self.limits, max_input_bytes=self.limits.max_output_bytes)
        made = await probe(cmd.output, limits, ffmpeg=exe, label="the output")
        if cmd.audio_only:
            if not made.has_audio or made.video_index is not None:
                raise PermanentError(
                    "ffmpeg wrote an audio output that is not audio only", code="invalid_output"
                )
            return made
        if made.video_index is None:
            raise PermanentError("ffmpeg wrote an output without video", code="invalid_output")
        if cmd.width and (made.width, made.height) != (cmd.width, cmd.height):
            log.warning(
                "output is %sx%s, planned %sx%s", made.width, made.height, cmd.width, cmd.height
            )
        return made


def output_metadata(made: Probe) -> dict[str, Any]:
    """What an edit's output says about the file written (a chunked edit's stitch too)."""
    return {
        "duration_ms": made.duration_ms,
        "width": made.width,
        "height": made.height,
        "video_codec": made.video_codec,
        "has_audio": made.has_audio,
        "size_bytes": made.size_bytes,
    }


def is_audio_only(req: EditRequest) -> bool:
    out = req.output
    return out.container in AUDIO_CONTAINERS or out.video_codec is VideoCodec.NONE


def check_encoders(output: Output | Mapping[str, Any], ffmpeg: str | None = None) -> None:
    """Refuse, at submission, an output this server's ffmpeg cannot encode.

    `output` is a canonical output dict (defaults filled in) or an `Output` model.
    Raises InvalidRequest whose details name the field and the codecs that would work.
    """
    data = output.model_dump(mode="json") if isinstance(output, Output) else dict(output)
    exe = ffmpeg or find_ffmpeg()
    container = Container(data.get("container") or "mp4")
    problems: list[dict[str, Any]] = []
    if container.value in IMAGE_ENCODERS:
        if pick_encoder(exe, IMAGE_ENCODERS, container.value) is None:
            usable = [c for c in IMAGE_ENCODERS if pick_encoder(exe, IMAGE_ENCODERS, c)]
            problems.append(
                {
                    "path": "output.container",
                    "message": f"this server's ffmpeg cannot write {container.value} files",
                    "allowed": usable,
                }
            )
    else:
        checks = (
            ("video_codec", VIDEO_ENCODERS, [c.value for c in ALLOWED_VIDEO[container]]),
            ("audio_codec", AUDIO_ENCODERS, [c.value for c in ALLOWED_AUDIO[container]]),
        )
        for field, table, allowed in checks:
            codec = data.get(field) or allowed[0]
            if codec == "none" or pick_encoder(exe, table, codec) is not None:
                continue
            problems.append(
                {
                    "path": f"output.{field}",
                    "message": f"this server's ffmpeg has no encoder for {codec}",
                    "allowed": [c for c in allowed if c == "none" or pick_encoder(exe, table, c)],
                }
            )
    if problems:
        raise InvalidRequest(
            "the requested output cannot be encoded by this server's ffmpeg", details=problems
        )


def make_edit_check(ffmpeg: str | None = None) -> Callable[[EditRequest], None]:
    """A submission-time check (JobService's `check_edit`) that the output can be encoded.

    Resolves the ffmpeg binary now, so a server without one fails at startup, not per job.
    """
    exe = ffmpeg or find_ffmpeg()

    def check(req: EditRequest) -> None:
        for one in [output_request(req, out) for out in req.outputs or []] or [req]:
            check_encoders(canonical_output(one), exe)

    return check


def media_type(container: str) -> str:
    """The Content-Type of an output in `container` (e.g. for GET /v1/jobs/{key}/output)."""
    return MEDIA_TYPES[Container(container)]
