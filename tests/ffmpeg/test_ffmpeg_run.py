"""Running ffmpeg: timeouts and cancellation kill the whole process group, rlimits hold,
and failures are classified as permanent or retryable with sanitized messages."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError, RetryableError
from workers.ffmpeg import run
from workers.ffmpeg.executor import FfmpegExecutor
from workers.ffmpeg.run import Limits, RunResult, raise_for_exit, run_ffmpeg, sanitize

pytestmark = pytest.mark.ffmpeg


def endless(ffmpeg: str, *out: str) -> list[str]:
    """A test-only command that never ends on its own (lavfi source without a duration)."""
    src = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"]
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *src,
        *(out or ("-f", "null", "-")),
    ]


async def test_timeout_kills_the_process_group(ffmpeg_bin: str, procs: Any) -> None:
    spawned: list[int] = []
    started = time.monotonic()
    with pytest.raises(RetryableError) as err:
        await run_ffmpeg(endless(ffmpeg_bin), Limits(), timeout_s=0.5, on_spawn=spawned.append)
    assert err.value.code == "timeout" and err.value.retryable
    assert time.monotonic() - started < 2.5
    assert not procs.group_alive(spawned[0])
    assert procs.children() == []


async def test_cancelling_a_run_stops_ffmpeg_quickly(ffmpeg_bin: str, procs: Any) -> None:
    spawned: list[int] = []
    task = asyncio.create_task(
        run_ffmpeg(endless(ffmpeg_bin), Limits(), timeout_s=60, on_spawn=spawned.append)
    )
    await asyncio.sleep(0.5)
    assert spawned and procs.group_alive(spawned[0])
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert not procs.group_alive(spawned[0])
    assert procs.children() == []


async def test_executor_timeout_is_retryable_and_leaves_nothing(
    ffmpeg_bin: str, long_clip: Path, make_ctx: Any, procs: Any
) -> None:
    ctx = make_ctx([long_clip], output={"container": "webm"})
    with pytest.raises(RetryableError) as err:
        await FfmpegExecutor(Limits(timeout_s=0.5), ffmpeg=ffmpeg_bin).execute(ctx)
    assert err.value.code == "timeout"
    assert list(ctx.workdir.iterdir()) == []
    assert procs.children() == []


async def test_cancelling_execute_stops_ffmpeg_within_two_seconds(
    ffmpeg_bin: str, long_clip: Path, make_ctx: Any, procs: Any
) -> None:
    progress: list[float] = []
    ctx = make_ctx([long_clip], [{"op": "scale", "width": 1280}], {"container": "webm"}, progress)
    task = asyncio.create_task(FfmpegExecutor(ffmpeg=ffmpeg_bin).execute(ctx))
    for _ in range(100):  # until the encode is under way
        await asyncio.sleep(0.05)
        if progress and procs.children():
            break
    assert procs.children(), "ffmpeg should be running"
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert procs.children() == []
    assert list(ctx.workdir.iterdir()) == []


async def test_progress_is_reported_and_throttled(
    ffmpeg_bin: str, long_clip: Path, tmp_path: Path
) -> None:
    seen: list[tuple[float, float]] = []
    argv = [
        ffmpeg_bin, "-nostdin", "-hide_banner", "-loglevel", "error", "-progress", "pipe:1",
        "-stats_period", "0.02", "-nostats", "-i", str(long_clip), "-t", "8",
        "-vf", "scale=1280:720", "-c:v", "libx264", "-preset", "veryfast", "-f", "null", "-",
    ]  # fmt: skip
    started = time.monotonic()
    result = await run_ffmpeg(
        argv, Limits(), timeout_s=60, expected_duration_ms=8_000,
        on_progress=lambda f: seen.append((time.monotonic(), f)),
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert seen[-1][1] == 1.0 and len(seen) >= 3
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    # ffmpeg wrote a block every 20 ms; we passed on at most ~4 a second (+ the final 1.0).
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen[:-1])]
    assert all(gap >= 0.2 for gap in gaps) and len(seen) <= elapsed * 4 + 2


_REPORT = """
import ctypes, json, resource
sig = ctypes.c_int(0)
ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
names = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CORE")
print(json.dumps({"pdeathsig": sig.value,
                  **{n: resource.getrlimit(getattr(resource, n)) for n in names}}))
"""


@pytest.mark.parametrize("way", ["util-linux", "preexec_fn"])
def test_a_contained_child_runs_under_every_limit_and_dies_with_its_parent(
    way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of containing a child (setpriv + prlimit exec'd in front of it, so the
    worker can spawn it with vfork; or a preexec_fn) give it the same limits and death
    signal."""
    run._wrappers.cache_clear()
    if way == "preexec_fn":
        monkeypatch.setattr(run.shutil, "which", lambda _name: None)
    limits = Limits(cpu_seconds=77, memory_bytes=3 * 1024**3, max_output_bytes=12345678)
    try:
        argv, preexec = run.contained([sys.executable, "-c", _REPORT], limits.rlimits(10))
        assert (preexec is None) == (way == "util-linux")
        out = subprocess.run(argv, preexec_fn=preexec, capture_output=True, check=True)
    finally:
        run._wrappers.cache_clear()
    got = json.loads(out.stdout)
    assert got["pdeathsig"] == signal.SIGKILL
    assert got["RLIMIT_CPU"] == [77, 77]
    assert got["RLIMIT_AS"] == [3 * 1024**3] * 2
    assert got["RLIMIT_FSIZE"] == [12345678] * 2
    assert got["RLIMIT_CORE"] == [0, 0]


@pytest.mark.parametrize("way", ["util-linux", "preexec_fn"])
def test_a_worker_under_a_lower_hard_limit_gives_its_child_that_limit(way: str) -> None:
    """A worker whose own hard limit is below the configured one (a container's ulimit)
    still starts its children, under its own limit: a child may not be given more."""
    hide = "import shutil; shutil.which = lambda _name: None\n" if way == "preexec_fn" else ""
    script = (
        f"{hide}import json, subprocess, sys\n"
        "from workers.ffmpeg.run import Limits, contained\n"
        "limits = Limits(max_output_bytes=12345678).rlimits(10)\n"
        f"argv, pre = contained([sys.executable, '-c', {_REPORT!r}], limits)\n"
        "print(subprocess.run(argv, preexec_fn=pre, capture_output=True, check=True).stdout.decode())\n"
    )
    lowered = ["prlimit", "--fsize=1000000:1000000", "--", sys.executable, "-c", script]
    out = subprocess.run(lowered, capture_output=True, check=True, cwd=Path(__file__).parents[2])
    got = json.loads(out.stdout)
    assert got["RLIMIT_FSIZE"] == [1000000, 1000000]
    assert got["RLIMIT_CORE"] == [0, 0] and got["pdeathsig"] == signal.SIGKILL


async def test_cpu_limit_stops_a_runaway_encode(ffmpeg_bin: str) -> None:
    argv = endless(ffmpeg_bin, "-c:v", "libx264", "-preset", "veryslow", "-f", "null", "-")
    result = await run_ffmpeg(argv, Limits(cpu_seconds=1), timeout_s=30)
    assert result.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    with pytest.raises(PermanentError if result.returncode == -signal.SIGXCPU else RetryableError):
        raise_for_exit(result, {}, Limits(cpu_seconds=1))


async def test_file_size_limit_stops_a_growing_output(ffmpeg_bin: str, tmp_path: Path) -> None:
    out = tmp_path / "big.mkv"
    argv = endless(ffmpeg_bin, "-c:v", "rawvideo", "-f", "matroska", str(out))
    limits = Limits(max_output_bytes=2_000_000)
    result = await run_ffmpeg(argv, limits, timeout_s=30)
    assert result.returncode == -signal.SIGXFSZ
    assert out.stat().st_size <= 2_000_000
    with pytest.raises(PermanentError) as err:
        raise_for_exit(result, {}, limits)
    assert err.value.code == "limit_exceeded"


@pytest.mark.parametrize(
    ("returncode", "stderr", "kind", "code"),
    [
        (
            1,
            ["/srv/in/a.mp4: Invalid data found when processing input"],
            PermanentError,
            "invalid_input",
        ),
        (1, ["[mov,mp4 @ 0x55d0] moov atom not found"], PermanentError, "invalid_input"),
        (1, ["av_interleaved_write_frame(): No space left on device"], RetryableError, "io_error"),
        (1, ["something nobody expected"], RetryableError, "ffmpeg_failed"),
        (-9, [], RetryableError, "killed"),
        (-int(signal.SIGXCPU), [], PermanentError, "limit_exceeded"),
    ],
)
def test_failures_are_classified(
    returncode: int, stderr: list[str], kind: type[Exception], code: str
) -> None:
    with pytest.raises(kind) as err:
        raise_for_exit(RunResult(returncode, stderr), {"/srv/in/a.mp4": "<input0>"}, Limits())
    assert getattr(err.value, "code", None) == code
    assert "/srv" not in str(err.value)


def test_sanitize_hides_server_paths_and_addresses() -> None:
    lines = [
        "[h264 @ 0x5581c0a0] error while decoding MB 3 4",
        "file:/var/lib/vidjobs/tmp/job-1/in.mp4: Invalid data found when processing input",
        "Error opening output /var/lib/vidjobs/tmp/job-1/output.mp4",
        "x" * 2000,
    ]
    text = sanitize(lines, {"/var/lib/vidjobs/tmp/job-1": "<workdir>"})
    assert "/var/lib" not in text and "0x5581c0a0" not in text
    assert len(text) <= 500
    text = sanitize(lines[:3], {"/var/lib/vidjobs/tmp/job-1": "<workdir>"})
    assert "<workdir>/in.mp4" in text and "[h264]" in text
    assert sanitize(["open /etc/shadow failed"], {}) == "open <path> failed"
