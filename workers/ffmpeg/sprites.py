"""The `sprites` task: thumbnail sprite sheets and a WebVTT index for scrubbing previews."""

from __future__ import annotations

from pathlib import Path

from jobs.errors import PermanentError
from jobs.packaging.specs import SpritesSpec, parse_task_spec
from workers.executor import ExecutionContext, ExecutionResult
from workers.ffmpeg.abr import SpritePlan, sprites_command
from workers.ffmpeg.rendition import FfmpegTask

VTT_FILE = "thumbnails.vtt"


def vtt_time(ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def sprite_vtt(plan: SpritePlan, sheets: list[str], interval_ms: int, duration_ms: int) -> str:
    """One cue per thumbnail: its time span and `sheet#xywh=x,y,w,h` (relative URIs)."""
    lines = ["WEBVTT", ""]
    columns = plan.columns
    for i in range(plan.count):
        start = i * interval_ms
        end = min(start + interval_ms, duration_ms)
        cell = i % plan.per_sheet
        x = (cell % columns) * plan.thumb_width
        y = (cell // columns) * plan.thumb_height
        sheet = sheets[i // plan.per_sheet]
        lines += [
            f"{vtt_time(start)} --> {vtt_time(end)}",
            f"{sheet}#xywh={x},{y},{plan.thumb_width},{plan.thumb_height}",
            "",
        ]
    return "\n".join(lines)


class SpritesExecutor(FfmpegTask):
    """Makes `sprite-001.jpg`, ... and `thumbnails.vtt` (`kind="sprites"`)."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = parse_task_spec(SpritesSpec, ctx.job.spec)
        if len(ctx.inputs) != 1:
            raise PermanentError("sprites read exactly one source", code="invalid_spec")
        exe = self.ffmpeg
        source = ctx.inputs[0]
        main = await self.preflight(source, spec.inputs[0].digest)
        root = ctx.workdir / "sprites"
        root.mkdir()
        plan = sprites_command(
            exe, source, main, root, interval=spec.interval_seconds, width=spec.width,
            columns=spec.columns, rows=spec.rows,
        )  # fmt: skip
        ctx.report_progress(0.0)
        await self.run(ctx, plan.argv, expected_duration_ms=main.duration_ms)
        sheets = [f"sprite-{n:03d}.jpg" for n in range(1, plan.sheets + 1)]
        missing = [s for s in sheets if not (root / s).is_file()]
        if missing:
            raise PermanentError(
                f"ffmpeg wrote {plan.sheets - len(missing)} of {plan.sheets} sprite sheets",
                code="invalid_output",
            )
        assert main.duration_ms is not None
        vtt = sprite_vtt(plan, sheets, spec.interval_seconds * 1000, main.duration_ms)
        (root / VTT_FILE).write_text(vtt, encoding="utf-8")
        files: dict[str, Path] = {name: root / name for name in [*sheets, VTT_FILE]}
        ctx.report_progress(1.0)
        metadata = {
            "vtt": VTT_FILE,
            "sheets": sheets,
            "interval_seconds": spec.interval_seconds,
            "width": plan.thumb_width,
            "height": plan.thumb_height,
            "columns": plan.columns,
            "rows": plan.rows,
            "count": plan.count,
        }
        return ExecutionResult(path=None, media_type=None, metadata=metadata, files=files)
