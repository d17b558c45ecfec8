"""The `rendition` task: one rung of a ladder, encoded with fixed, aligned keyframes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jobs.errors import PermanentError
from jobs.packaging.specs import RenditionSpec, parse_task_spec
from workers.executor import ExecutionContext, ExecutionResult
from workers.ffmpeg.abr import rendition_command
from workers.ffmpeg.binary import find_ffmpeg
from workers.ffmpeg.probe import Probe, preflight, probe
from workers.ffmpeg.probecache import ProbeCache
from workers.ffmpeg.run import Limits, raise_for_exit, run_ffmpeg

RENDITION_FILE = "rendition.mp4"


class FfmpegTask:
    """What every ffmpeg executor shares (the edit executor and the package-side ones): the
    limits, the ffmpeg binary and the probe cache (None: every input is read again, as
    `bench.probe_cache` compares)."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        ffmpeg: str | None = None,
        probes: ProbeCache | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self._ffmpeg = ffmpeg
        self.probes: ProbeCache | None = probes or ProbeCache()

    async def preflight(self, source: Path, digest: str | None, **checks: Any) -> Probe:
        """`preflight` of a verified input whose content digest is `digest`, through the
        probe cache (every check still runs on each use)."""
        if self.probes is None:
            return await preflight(source, self.limits, ffmpeg=self.ffmpeg, **checks)
        return await self.probes.preflight(
            source, digest, self.limits, ffmpeg=self.ffmpeg, **checks
        )

    @property
    def ffmpeg(self) -> str:
        if self._ffmpeg is None:
            self._ffmpeg = find_ffmpeg()
        return self._ffmpeg

    def redactions(self, ctx: ExecutionContext, extra: list[Path] | None = None) -> dict[str, str]:
        redact = {str(ctx.workdir): "<workdir>", self.ffmpeg: "ffmpeg"}
        redact.update({str(p): f"<input{i}>" for i, p in enumerate([*ctx.inputs, *(extra or [])])})
        return redact

    async def run(
        self,
        ctx: ExecutionContext,
        argv: list[str],
        *,
        expected_duration_ms: int | None = None,
        also_redact: list[Path] | None = None,
    ) -> None:
        """Run one command under the limits, progress to `ctx`, failures classified."""
        result = await run_ffmpeg(
            argv,
            self.limits,
            timeout_s=self.limits.timeout_s,
            expected_duration_ms=expected_duration_ms,
            on_progress=ctx.report_progress if expected_duration_ms else None,
        )
        raise_for_exit(result, self.redactions(ctx, also_redact), self.limits)

    @property
    def output_limits(self) -> Limits:
        """Limits for probing what we wrote (as large as an output may be)."""
        return dataclasses.replace(self.limits, max_input_bytes=self.limits.max_output_bytes)


class RenditionExecutor(FfmpegTask):
    """Encodes one rung (`kind="rendition"`): H.264 + AAC in an MP4 whose keyframes fall
    exactly every `segment_seconds`. Output file: `rendition.mp4`; metadata: its size,
    frame rate, GOP, codec string and whether it has audio."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = parse_task_spec(RenditionSpec, ctx.job.spec)
        if len(ctx.inputs) != 1:
            raise PermanentError("a rendition reads exactly one source", code="invalid_spec")
        exe = self.ffmpeg
        source = ctx.inputs[0]
        main = await self.preflight(source, spec.inputs[0].digest)
        out = ctx.workdir / RENDITION_FILE
        plan = rendition_command(
            exe,
            source,
            main,
            out,
            height=spec.height,
            video_kbps=spec.video_bitrate_kbps,
            audio_kbps=spec.audio_bitrate_kbps,
            segment_seconds=spec.segment_seconds,
        )
        ctx.report_progress(0.0)
        try:
            await self.run(ctx, plan.argv, expected_duration_ms=main.duration_ms)
            made = await probe(out, self.output_limits, ffmpeg=exe, label="the rendition")
            if (made.width, made.height) != (plan.width, plan.height):
                raise PermanentError(
                    f"the rendition is {made.width}x{made.height}, not the planned "
                    f"{plan.width}x{plan.height}",
                    code="invalid_output",
                )
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        ctx.report_progress(1.0)
        metadata = {
            "width": plan.width,
            "height": plan.height,
            "fps": plan.fps,
            "gop": plan.gop,
            "video_bitrate_kbps": spec.video_bitrate_kbps,
            "video_codecs": plan.codecs.split(",")[0],
            "has_audio": plan.has_audio,
            "duration_ms": made.duration_ms,
            "size_bytes": made.size_bytes,
        }
        return ExecutionResult(
            path=None, media_type=None, metadata=metadata, files={RENDITION_FILE: out}
        )
