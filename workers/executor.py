"""The executor port: what the runner asks of whatever actually edits the video.

The ffmpeg executor (`workers.ffmpeg`) is the real one; `SleepExecutor` is a fast,
fixed-time stand-in for tests and load runs. An executor raises `PermanentError` for input
that can never succeed and `RetryableError` (or anything else) for transient failures.
Cancellation arrives as `asyncio.CancelledError`: the executor must stop its child
processes before it returns.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jobs.errors import PermanentError, RetryableError
from jobs.models import Job


@dataclass(frozen=True)
class DepOutput:
    """A dependency task's result as a task that reads it sees it: its output dict and its
    stored files made local (relative path -> file in this attempt's workdir), each checked
    against its digest. `path` is the dependency's single output file, if it has one."""

    output: Mapping[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    path: Path | None = None


class ExecutionContext:
    """One attempt, as an executor sees it.

    `workdir` is the attempt's private scratch directory, made on first use (an executor
    that writes no file costs no directory) and removed by the runner afterwards. `deps`
    has, for each task this one depends on (by task name), what it produced.
    """

    __slots__ = ("_make_workdir", "_workdir", "deps", "inputs", "job", "report_progress")

    def __init__(
        self,
        job: Job,
        inputs: list[Path],
        report_progress: Callable[[float], None],
        *,
        workdir: Path | None = None,
        make_workdir: Callable[[], Path] | None = None,
        deps: Mapping[str, DepOutput] | None = None,
    ) -> None:
        if workdir is None and make_workdir is None:
            raise ValueError("an ExecutionContext needs a workdir or a way to make one")
        self.job = job
        self.inputs = inputs  # local files of spec["inputs"], main source first
        self.report_progress = report_progress  # 0..1; cheap, the runner throttles it
        self.deps: Mapping[str, DepOutput] = deps or {}
        self._workdir = workdir
        self._make_workdir = make_workdir

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            assert self._make_workdir is not None
            self._workdir = self._make_workdir()
        return self._workdir

    @property
    def workdir_made(self) -> Path | None:
        """The scratch directory if it exists yet, without making it."""
        return self._workdir


@dataclass(frozen=True)
class ExecutionResult:
    # The finished file, inside workdir; the runner stores it by digest. None: the job
    # yields metadata only (no file to store, no output to download).
    path: Path | None
    media_type: str | None
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. duration_ms, width, height
    # More files, inside workdir, by the relative path they are published at (a package's
    # segments and playlists); the runner stores each by digest into the output's `files`.
    files: dict[str, Path] = field(default_factory=dict)


class Executor(Protocol):
    async def execute(self, ctx: ExecutionContext) -> ExecutionResult: ...


class ExecutorRegistry:
    """Dispatches a claimed job or task to the executor of its `spec["kind"]` (none: "edit",
    every simple job). Composition registers the kinds a worker can run."""

    def __init__(self, edit: Executor, **kinds: Executor) -> None:
        self.kinds: dict[str, Executor] = {"edit": edit, **kinds}

    def register(self, kind: str, executor: Executor) -> None:
        self.kinds[kind] = executor

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        kind = ctx.job.spec.get("kind") or "edit"
        executor = self.kinds.get(str(kind))
        if executor is None:
            raise PermanentError(
                f"this worker has no executor for task kind {str(kind)[:40]!r}",
                code="unknown_task_kind",
            )
        return await executor.execute(ctx)


class SleepExecutor:
    """Sleeps for a fixed time in small steps, reporting progress, then writes a small file.

    The output's bytes are a function of the job spec, so equal jobs give equal outputs.
    `fail_times` maps a key to how many of its first runs fail (retryably), and
    `permanent_keys` fail permanently, for tests; `steps` progress reports over `seconds`;
    `media_seconds` is the duration the output claims (what the usage ledger adds up).
    """

    def __init__(
        self,
        seconds: float = 0.05,
        *,
        steps: int = 5,
        media_seconds: float = 1.0,
        fail_times: dict[str, int] | None = None,
        permanent_keys: set[str] | None = None,
    ) -> None:
        self.seconds = seconds
        self.steps = max(1, steps)
        self.media_seconds = media_seconds
        self.fail_times = dict(fail_times or {})
        self.permanent_keys = set(permanent_keys or ())
        self.runs: list[str] = []

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        key = ctx.job.key
        self.runs.append(key)
        for i in range(self.steps):
            await asyncio.sleep(self.seconds / self.steps)
            ctx.report_progress((i + 1) / self.steps)
        if key in self.permanent_keys:
            raise PermanentError(
                "the test executor was told this input is invalid", code="invalid_input"
            )
        if self.fail_times.get(key, 0) > 0:
            self.fail_times[key] -= 1
            raise RetryableError(
                "the test executor was told to fail this attempt", code="transient"
            )
        out = ctx.workdir / "output.json"
        out.write_text(json.dumps({"key": key, "spec": ctx.job.spec}, sort_keys=True))
        return ExecutionResult(
            path=out,
            media_type="application/json",
            metadata={"duration_ms": int(self.media_seconds * 1000)},
        )
