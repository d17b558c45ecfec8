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
from typing import Any

from jobs.errors import InvalidRequest, PermanentError
from jobs.spec import (
    ALLOWED_AUDIO,
    ALLOWED_VIDEO,
    Concat,
    Container,
    EditRequest,
    Output,
    Watermark,
    canonical_output,
)
from workers.executor import ExecutionContext, ExecutionResult
from workers.ffmpeg.binary import (
    AUDIO_ENCODERS,
    IMAGE_ENCODERS,
    VIDEO_ENCODERS,
    encoders,
    find_ffmpeg,
    pick_encoder,
)
from workers.ffmpeg.command import MEDIA_TYPES, Command, build_command, parse_spec
from workers.ffmpeg.probe import Probe, preflight, probe
from workers.ffmpeg.run import Limits, raise_for_exit, run_ffmpeg

log = logging.getLogger(__name__)


class FfmpegExecutor:
    """Runs edit jobs with ffmpeg under `limits`. `ffmpeg` defaults to `find_ffmpeg()`."""

    def __init__(self, limits: Limits | None = None, *, ffmpeg: str | None = None) -> None:
        self.limits = limits or Limits()
        self._ffmpeg = ffmpeg

    @property
    def ffmpeg(self) -> str:
        if self._ffmpeg is None:
            self._ffmpeg = find_ffmpeg()
        return self._ffmpeg

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        exe = self.ffmpeg
        spec = ctx.job.spec
        roles = input_roles(parse_spec(spec))
        if len(ctx.inputs) != len(roles):
            raise PermanentError("the job's input files do not match its spec", code="invalid_spec")
        probes: list[Probe] = []
        for path, (label, allow_image) in zip(ctx.inputs, roles, strict=True):
            probes.append(
                await preflight(path, self.limits, allow_image=allow_image, ffmpeg=exe, label=label)
            )
        have = await asyncio.to_thread(encoders, exe)
        container = Container(spec["output"]["container"])
        out = ctx.workdir / f"output-{secrets.token_hex(8)}.{container.value}"
        cmd = build_command(exe, spec, ctx.inputs, probes, out, have)
        redact = {str(ctx.workdir): "<workdir>", exe: "ffmpeg"}
        redact.update({str(p): f"<input{i}>" for i, p in enumerate(ctx.inputs)})
        ctx.report_progress(0.0)
        try:
            result = await run_ffmpeg(
                cmd.argv,
                self.limits,
                timeout_s=self.limits.timeout_s,
                expected_duration_ms=cmd.expected_duration_ms,
                on_progress=ctx.report_progress,
            )
            raise_for_exit(result, redact, self.limits)
            made = await self._verify(cmd, exe)
        except BaseException:
            out.unlink(missing_ok=True)  # never leave a partial file behind
            raise
        ctx.report_progress(1.0)
        metadata = {
            "duration_ms": made.duration_ms,
            "width": made.width,
            "height": made.height,
            "video_codec": made.video_codec,
            "has_audio": made.has_audio,
            "size_bytes": made.size_bytes,
        }
        return ExecutionResult(path=out, media_type=cmd.media_type, metadata=metadata)

    async def _verify(self, cmd: Command, exe: str) -> Probe:
        """The output must exist, be readable media with a video stream, of the planned size."""
        if not cmd.output.is_file() or cmd.output.stat().st_size == 0:
            raise PermanentError(
                "ffmpeg produced no output (is a trim or thumbnail time past the end?)",
                code="invalid_input",
            )
        limits = dataclasses.replace(self.limits, max_input_bytes=self.limits.max_output_bytes)
        made = await probe(cmd.output, limits, ffmpeg=exe, label="the output")
        if made.video_index is None:
            raise PermanentError("ffmpeg wrote an output without video", code="invalid_output")
        if cmd.width and (made.width, made.height) != (cmd.width, cmd.height):
            log.warning(
                "output is %sx%s, planned %sx%s", made.width, made.height, cmd.width, cmd.height
            )
        return made


def input_roles(req: EditRequest) -> list[tuple[str, bool]]:
    """(label for messages, images allowed) for each input, in the spec's input order."""
    roles = [("the source", False)]
    for op in req.operations:
        if isinstance(op, Concat):
            roles += [(f"concat source {i}", False) for i in range(1, len(op.sources) + 1)]
        elif isinstance(op, Watermark):
            roles.append(("the watermark", True))
    return roles


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
        check_encoders(canonical_output(req), exe)

    return check


def media_type(container: str) -> str:
    """The Content-Type of an output in `container` (e.g. for GET /v1/jobs/{key}/output)."""
    return MEDIA_TYPES[Container(container)]
