"""Run ffmpeg as a contained child process: argv only, no stdin, its own process group,
rlimits, a wall-clock timeout, progress parsing, and a classification of its failures.

The whole process group is killed (SIGKILL) on timeout and on cancellation, so no encoder
thread or helper outlives the job that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import resource
import shutil
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from jobs.errors import PermanentError, RetryableError
from jobs.settings import Settings
from jobs.tracecontext import traced

GiB = 1024**3


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits and the media limits that preflight enforces."""

    timeout_s: float = 3600.0  # wall clock per ffmpeg run
    probe_timeout_s: float = 30.0  # wall clock per probe
    cpu_seconds: int | None = None  # RLIMIT_CPU; None: timeout x CPU count (encoders thread)
    memory_bytes: int = 4 * GiB  # RLIMIT_AS
    max_output_bytes: int = 16 * GiB  # RLIMIT_FSIZE: no single file written may be larger
    max_duration_ms: int = 4 * 3600 * 1000
    max_pixels: int = 7680 * 4320
    max_streams: int = 16
    max_input_bytes: int = 16 * GiB
    encoder_threads: int | None = None  # `-threads N` on edit encodes; None: ffmpeg's choice

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The operator's limits (VIDJOBS_FFMPEG_*, VIDJOBS_MAX_SOURCE_DURATION_SECONDS)."""
        out = settings.ffmpeg_max_output_mib * 1024 * 1024
        return cls(
            timeout_s=settings.ffmpeg_timeout_seconds,
            memory_bytes=settings.ffmpeg_memory_mib * 1024 * 1024,
            max_output_bytes=out,
            max_input_bytes=max(out, cls.max_input_bytes),
            max_duration_ms=int(settings.max_source_duration_seconds * 1000),
            encoder_threads=settings.ffmpeg_encoder_threads,
        )

    def rlimits(self, timeout_s: float) -> tuple[tuple[int, int], ...]:
        cpu = self.cpu_seconds or max(60, int(timeout_s * (os.cpu_count() or 1)) + 60)
        return (
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_FSIZE, self.max_output_bytes),
            (resource.RLIMIT_CORE, 0),
        )


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stderr: list[str]  # the last lines, unsanitized: callers sanitize before showing them


ProgressCallback = Callable[[float], None]

_KILL_WAIT_S = 1.5
_PROGRESS_INTERVAL_S = 0.25
_MAX_LINE = 4096

_INVALID_INPUT = re.compile(
    r"Invalid data found|moov atom not found|does not contain any stream|Unsupported codec"
    r"|Format not on whitelist|could not find codec parameters|Invalid image size"
    r"|Picture size \d+x\d+ is invalid|Invalid NAL unit|no frame!|EBML header parsing failed"
    r"|Output file is empty|Output file #0 does not contain any stream|matches no streams"
    r"|End of file|Invalid argument",
    re.IGNORECASE,
)
_TRANSIENT_IO = re.compile(
    r"No space left on device|Input/output error|Resource temporarily unavailable"
    r"|Cannot allocate memory|Too many open files|Stale file handle",
    re.IGNORECASE,
)


_HEAP_ADDRESS = re.compile(r"\[([^\]\s@]+) @ 0x[0-9a-fA-F]+\]")

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # not glibc-like: no parent-death signal, the closed progress pipe still ends it
    _LIBC = None


Rlimits = tuple[tuple[int, int], ...]
_PRLIMIT_OPTIONS = {
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_AS: "--as",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_CORE: "--core",
}


def _apply_rlimits(limits: Rlimits) -> None:
    # Runs in the child between fork and exec: only setrlimit and prctl here.
    for which, value in limits:
        resource.setrlimit(which, (value, value))
    if _LIBC is not None:
        # If the worker dies (kill -9), the kernel kills its ffmpeg too: no orphan transcodes.
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _within_hard_limits(limits: Rlimits) -> Rlimits:
    """Each limit at most the worker's own hard limit (a container's `ulimit`, say): a child
    may not be given more than its parent has, and asking would fail its start."""
    out = []
    for which, value in limits:
        hard = resource.getrlimit(which)[1]
        out.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return tuple(out)


@functools.cache
def _wrappers() -> tuple[str, str] | None:
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    return (setpriv, prlimit) if setpriv and prlimit else None


def contained(
    argv: Sequence[str], limits: Rlimits
) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) for a child under `limits` that the kernel kills with its parent.

    Where util-linux is installed, `setpriv --pdeathsig KILL` and `prlimit` do it and exec the
    command, so there is no preexec_fn and Python spawns with vfork: a preexec_fn forces a
    fork, which copies the worker's page tables and blocks its event loop (about 10 ms at
    200 MiB resident, on every ffmpeg run: `python -m bench.spawn`). Elsewhere the same is
    done in a preexec_fn."""
    limits = _within_hard_limits(limits)
    tools = _wrappers()
    if tools is None or any(which not in _PRLIMIT_OPTIONS for which, _ in limits):
        return list(argv), partial(_apply_rlimits, limits)
    setpriv, prlimit = tools
    caps = [f"{_PRLIMIT_OPTIONS[which]}={value}" for which, value in limits]
    return [setpriv, "--pdeathsig", "KILL", "--", prlimit, *caps, "--", *argv], None


async def _lines(stream: asyncio.StreamReader | None) -> AsyncIterator[str]:
    """Lines split on \\n or \\r, each cut to a sane length, without unbounded buffering."""
    if stream is None:
        return
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        parts = re.split(rb"[\r\n]", pending)
        pending = parts.pop()[-_MAX_LINE:]
        for part in parts:
            if part:
                yield part[:_MAX_LINE].decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def kill_group(pid: int) -> None:
    """SIGKILL the process group of a child started with `start_new_session=True`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _exit_attributes(result: RunResult) -> dict[str, int]:
    return {"process.exit.code": result.returncode}


@traced("ffmpeg", _exit_attributes)
async def run_ffmpeg(
    argv: Sequence[str],
    limits: Limits,
    *,
    timeout_s: float,
    expected_duration_ms: int | None = None,
    on_progress: ProgressCallback | None = None,
    on_spawn: Callable[[int], None] | None = None,
    keep_lines: int = 40,
) -> RunResult:
    """Run one ffmpeg command to its end. Raises RetryableError(code="timeout") on timeout.

    The caller decides what a non-zero exit means (`raise_for_exit`). Cancellation kills
    the process group before `CancelledError` propagates.
    """
    command, preexec = contained(argv, limits.rlimits(timeout_s))
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        preexec_fn=preexec,
    )
    if on_spawn is not None:
        on_spawn(proc.pid)
    stderr: deque[str] = deque(maxlen=keep_lines)

    async def read_stderr() -> None:
        async for line in _lines(proc.stderr):
            stderr.append(line)

    async def read_progress() -> None:
        last = 0.0
        async for line in _lines(proc.stdout):
            if on_progress is None:
                continue
            key, _, value = line.partition("=")
            if key == "progress" and value.strip() == "end":
                on_progress(1.0)
            elif key in ("out_time_us", "out_time_ms") and expected_duration_ms:
                # Both are microseconds (out_time_ms is misnamed in ffmpeg).
                now = time.monotonic()
                if now - last < _PROGRESS_INTERVAL_S or not value.strip().isdigit():
                    continue
                last = now
                on_progress(min(1.0, max(0.0, int(value) / 1000 / expected_duration_ms)))

    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(read_stderr(), read_progress(), proc.wait())
    except TimeoutError:
        await _kill_and_reap(proc)
        raise RetryableError(
            f"ffmpeg ran longer than the limit of {timeout_s:g} s and was stopped",
            code="timeout",
        ) from None
    except BaseException:  # cancellation (or anything else): never leave the group running
        await _kill_and_reap(proc)
        raise
    assert proc.returncode is not None
    return RunResult(returncode=proc.returncode, stderr=list(stderr))


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    kill_group(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), _KILL_WAIT_S)


def sanitize(lines: Sequence[str], redact: Mapping[str, str], limit: int = 500) -> str:
    """The last stderr lines with server paths replaced by placeholders, cut to `limit`."""
    text = "\n".join(line.strip() for line in lines if line.strip())
    for secret in sorted(redact, key=len, reverse=True):
        if secret:
            text = text.replace(secret, redact[secret])
    # drop heap addresses: `[mp4 @ 0x..]`, and names with `#`, `:` or `/` (`[in#0 @ 0x..]`,
    # `[vost#0:0/libx264 @ 0x..]`)
    text = _HEAP_ADDRESS.sub(r"[\1]", text)
    text = re.sub(r"(?<![\w<>])(?:file:)?/[^\s'\":,]+", "<path>", text)
    return text[-limit:]


def raise_for_exit(result: RunResult, redact: Mapping[str, str], limits: Limits) -> None:
    """Map a finished run to success (return) or a classified ExecutionError."""
    code = result.returncode
    if code == 0:
        return
    tail = sanitize(result.stderr[-6:], redact)
    details = {"returncode": code, "stderr": tail}
    if code < 0:
        sig = -code
        if sig == signal.SIGXCPU:
            raise PermanentError(
                "ffmpeg used more CPU time than its limit allows",
                code="limit_exceeded",
                details=details,
            )
        if sig == signal.SIGXFSZ:
            raise PermanentError(
                f"the output grew past the limit of {limits.max_output_bytes} bytes",
                code="limit_exceeded",
                details=details,
            )
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
        raise RetryableError(f"ffmpeg was killed by signal {name}", code="killed", details=details)
    joined = "\n".join(result.stderr[-12:])
    if _TRANSIENT_IO.search(joined):
        raise RetryableError(
            f"ffmpeg hit an I/O or resource error: {tail}", code="io_error", details=details
        )
    if _INVALID_INPUT.search(joined):
        raise PermanentError(
            f"ffmpeg could not process the input: {tail}", code="invalid_input", details=details
        )
    raise RetryableError(
        f"ffmpeg failed with exit code {code}: {tail}", code="ffmpeg_failed", details=details
    )
