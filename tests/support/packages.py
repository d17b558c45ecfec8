"""Packages built on real media by the real executors, as the runner would run them.

Until the task graph runs jobs end to end, tests build the ExecutionContexts by hand: the
rendition tasks of a plan on a lavfi source, then the package task with `deps` = their
outputs (files made local, output = metadata + the files' digests), like the runner.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.models import Job
from jobs.packaging import plan_package, plan_thumbnails
from jobs.packaging.media import media_type_for
from jobs.spec import EditRequest
from jobs.storage.base import file_sha256
from jobs.taskplan import TaskPlan
from workers.executor import DepOutput, ExecutionContext, ExecutionResult
from workers.ffmpeg.package import PackageExecutor
from workers.ffmpeg.rendition import RenditionExecutor
from workers.ffmpeg.sprites import SpritesExecutor

SOURCE_DIGEST = "sha256:" + "5" * 64


def make_source(ffmpeg: str, out: Path, seconds: float = 4, size: str = "1280x720") -> Path:
    """A 720p, 25 fps h264 + 48 kHz aac test pattern (lavfi: test media only)."""
    subprocess.run(
        [
            ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
            "-shortest", str(out),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip
    return out


def context(spec: dict[str, Any], inputs: list[Path], workdir: Path, **kw: Any) -> ExecutionContext:
    job = Job(tenant_id="t", key="vj1_" + "0" * 64, status="running", spec=spec)
    workdir.mkdir(parents=True, exist_ok=True)
    return ExecutionContext(job, inputs, lambda _: None, workdir=workdir, **kw)


def task_output(result: ExecutionResult) -> dict[str, Any]:
    """What the runner makes of a result with files: metadata + {"files": {rel: digest...}}."""
    files = {}
    for rel, path in result.files.items():
        digest, size = file_sha256(path)
        files[rel] = {"digest": digest, "size": size, "media_type": media_type_for(rel)}
    return {**result.metadata, "files": files}


@dataclass
class Built:
    plans: list[TaskPlan]
    renditions: dict[str, ExecutionResult]
    package: ExecutionResult
    output: dict[str, Any]  # the package task's output (what job.output["package"] is)
    root: Path  # the package files, by relative name


def build_renditions(
    ffmpeg: str, source: Path, work: Path, ladder: Any, segment_seconds: int = 2
) -> tuple[EditRequest, dict[str, ExecutionResult]]:
    req = EditRequest.model_validate(
        {
            "source": {"digest": SOURCE_DIGEST},
            "package": {"format": "hls", "segment_seconds": segment_seconds, "ladder": ladder},
        }
    )
    plans = plan_package(req, {"width": 1280, "height": 720})
    done = {}
    for plan in plans[:-1]:
        ctx = context(plan.spec, [source], work / plan.name)
        done[plan.name] = asyncio.run(RenditionExecutor(ffmpeg=ffmpeg).execute(ctx))
    return req, done


def build_package(
    ffmpeg: str, renditions: dict[str, ExecutionResult], work: Path, fmt: str,
    segment_seconds: int = 2,
) -> Built:  # fmt: skip
    ladder = [{"height": r.metadata["height"]} for r in renditions.values()]
    req = EditRequest.model_validate(
        {
            "source": {"digest": SOURCE_DIGEST},
            "package": {"format": fmt, "segment_seconds": segment_seconds, "ladder": ladder},
        }
    )
    plans = plan_package(req, {"width": 1280, "height": 720})
    deps = {
        name: DepOutput(output=task_output(r), files=dict(r.files))
        for name, r in renditions.items()
    }
    workdir = work / f"package-{fmt}"
    shutil.rmtree(workdir, ignore_errors=True)
    ctx = context(plans[-1].spec, [], workdir, deps=deps)
    result = asyncio.run(PackageExecutor(ffmpeg=ffmpeg).execute(ctx))
    return Built(plans, renditions, result, task_output(result), workdir / "package")


def build_sprites(ffmpeg: str, source: Path, work: Path, **thumbs: Any) -> ExecutionResult:
    req = EditRequest.model_validate({"source": {"digest": SOURCE_DIGEST}, "thumbnails": thumbs})
    plan = plan_thumbnails(req, {"width": 1280, "height": 720})[0]
    return asyncio.run(SpritesExecutor(ffmpeg=ffmpeg).execute(context(plan.spec, [source], work)))
