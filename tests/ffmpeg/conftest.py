"""Fixtures for the ffmpeg tests: a real ffmpeg binary and small clips made with lavfi.

Without any ffmpeg binary these tests skip (or fail, with VIDJOBS_REQUIRE_SERVICES=1) and
say how to get one. Clips are tiny (320x240, a couple of seconds) so the directory runs fast.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobs.canonical import canonical_edit
from jobs.models import Job
from jobs.spec import EditRequest
from workers.executor import ExecutionContext, ExecutionResult
from workers.ffmpeg.binary import FfmpegNotFound, find_ffmpeg
from workers.ffmpeg.executor import FfmpegExecutor
from workers.ffmpeg.probe import Probe, probe
from workers.ffmpeg.run import Limits


def _find_or_skip() -> str:
    try:
        return find_ffmpeg()
    except FfmpegNotFound as exc:
        message = f"the ffmpeg tests need an ffmpeg binary: {exc}"
        if os.environ.get("VIDJOBS_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def ffmpeg_bin() -> str:
    return _find_or_skip()


@pytest.fixture(autouse=True)
def _needs_ffmpeg(ffmpeg_bin: str) -> None:
    """Every test in this directory needs the binary: skip or fail them all the same way."""


def make_clip(ffmpeg: str, out: Path, *args: str) -> Path:
    """Run ffmpeg with lavfi sources to make a test file (test-only: lavfi is never allowed
    in production commands)."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)]
    subprocess.run(cmd, check=True, timeout=120)
    return out


def lavfi_av(
    seconds: float, size: str = "320x240", rate: int = 25, audio: bool = True
) -> list[str]:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    return args


@dataclass(frozen=True)
class Media:
    clip: Path  # 2 s, 320x240, 25 fps, h264 (keyframe every second) + aac
    small: Path  # 1 s, 160x120, 30 fps, h264 in mkv, no audio
    logo: Path  # 64x32 solid red PNG
    wav: Path  # 1 s audio only


@pytest.fixture(scope="session")
def media(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("media")
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p"]
    clip = make_clip(ffmpeg_bin, d / "clip.mp4", *lavfi_av(2), *x264, "-c:a", "aac", "-shortest")
    small = make_clip(ffmpeg_bin, d / "small.mkv", *lavfi_av(1, "160x120", 30, audio=False), *x264)
    logo = make_clip(
        ffmpeg_bin, d / "logo.png", "-f", "lavfi", "-i", "color=c=red:size=64x32", "-frames:v", "1"
    )
    wav = make_clip(ffmpeg_bin, d / "tone.wav", "-f", "lavfi", "-i", "sine=duration=1")
    return Media(clip, small, logo, wav)


@pytest.fixture(scope="session")
def long_clip(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of video, for timeouts and cancellation: slow to re-encode, quick to make."""
    d = tmp_path_factory.mktemp("long")
    return make_clip(
        ffmpeg_bin, d / "long.mp4", *lavfi_av(60, "640x360", 25, audio=False),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    )  # fmt: skip


def fake_digest(i: int) -> str:
    return f"sha256:{i + 1:064x}"


def make_context(
    workdir: Path,
    inputs: Sequence[Path],
    operations: Sequence[dict[str, Any]] = (),
    output: dict[str, Any] | None = None,
    progress: list[float] | None = None,
) -> ExecutionContext:
    """A job context as the runner builds it: canonical spec, input files in spec order."""
    req = EditRequest.model_validate(
        {
            "source": {"digest": fake_digest(0)},
            "operations": list(operations),
            "output": output or {},
        }
    )
    digests = [fake_digest(i) for i in range(len(inputs))]
    spec = canonical_edit(req, digests)
    spec["inputs"] = [{"digest": d, "path": str(p)} for d, p in zip(digests, inputs, strict=True)]
    job = Job(tenant_id="t", key="vj1_" + "0" * 64, status="running", spec=spec)
    workdir.mkdir(parents=True, exist_ok=True)
    sink = progress if progress is not None else []
    return ExecutionContext(job, list(inputs), sink.append, workdir=workdir)


RunEdit = Callable[..., Awaitable[tuple[ExecutionResult, Probe]]]


@pytest.fixture
def run_edit(tmp_path: Path, media: Media, ffmpeg_bin: str) -> RunEdit:
    """Execute an edit through FfmpegExecutor and probe what it made."""

    async def run(
        operations: Sequence[dict[str, Any]] = (),
        output: dict[str, Any] | None = None,
        inputs: Sequence[Path] | None = None,
        limits: Limits | None = None,
        progress: list[float] | None = None,
    ) -> tuple[ExecutionResult, Probe]:
        ctx = make_context(tmp_path / "work", inputs or [media.clip], operations, output, progress)
        result = await FfmpegExecutor(limits, ffmpeg=ffmpeg_bin).execute(ctx)
        assert result.path.parent == ctx.workdir
        return result, await probe(result.path, ffmpeg=ffmpeg_bin)

    return run


def _ffmpeg_children() -> list[int]:
    """Pids of ffmpeg processes that are children of this test process (zombies included)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm.startswith("ffmpeg"):
            found.append(int(entry.name))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class Procs:
    children: Callable[[], list[int]]
    group_alive: Callable[[int], bool]


@pytest.fixture
def procs() -> Procs:
    """Looks at this process's ffmpeg children and at process groups."""
    return Procs(_ffmpeg_children, _group_alive)


MakeCtx = Callable[..., ExecutionContext]


@pytest.fixture
def make_ctx(tmp_path: Path) -> MakeCtx:
    """`make_context` with a fresh workdir under tmp_path."""

    def make(
        inputs: Sequence[Path],
        operations: Sequence[dict[str, Any]] = (),
        output: dict[str, Any] | None = None,
        progress: list[float] | None = None,
    ) -> ExecutionContext:
        return make_context(tmp_path / "work", inputs, operations, output, progress)

    return make


MakeClip = Callable[..., Path]


@pytest.fixture
def clip_maker(ffmpeg_bin: str, tmp_path: Path) -> MakeClip:
    """Make a file under tmp_path with ffmpeg: `clip_maker("name.mkv", *ffmpeg_args)`."""

    def make(name: str, *args: str) -> Path:
        return make_clip(ffmpeg_bin, tmp_path / name, *args)

    return make
