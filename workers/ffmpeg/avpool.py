"""Long-lived probe children: `avchild.py`, spawned once and asked many times.

A probe used to start a fresh `python -I avchild.py` per file, and about 90 of its ~115 ms
went to starting Python and importing PyAV. A child now answers one request per line
(`[path, format_whitelist, max_pixels]` in, one line of JSON out) and is kept for the next
probe, under the same rlimits, allowlists and wall-clock limit as before. What keeps one
file from affecting another:

- a child serves at most `MAX_USES` files, and is killed on a timeout or any error;
- a child that was used before and dies before answering (a resource limit its earlier
  files used up, its idle exit, a crash) is never the verdict: the file is asked again of a
  fresh child, whose answer or death is the verdict, exactly as with one child per file;
- children are keyed by their rlimits, so a call with other limits gets its own children;
- the child exits by itself after `IDLE_S` without a request, or when its parent's pipe
  closes, so a worker leaves none behind.

The blocking pipe I/O runs in a thread (`asyncio.to_thread`), so the pool serves any event
loop and any thread (the API probes uploads from threads of its own).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers.ffmpeg.run import Rlimits, contained, kill_group

MAX_USES = 100  # files one child reads before it is replaced
MAX_IDLE = 4  # idle children kept per set of limits
IDLE_S = 60.0  # a child with no request for this long exits by itself
_CHILD = Path(__file__).with_name("avchild.py")  # run by path: imports only av and json


@dataclass(frozen=True)
class Died:
    """The child exited before answering: its exit status (negative: the signal)."""

    returncode: int


class _Child:
    def __init__(self, rlimits: Rlimits) -> None:
        argv = [sys.executable, "-I", str(_CHILD), str(IDLE_S), str(MAX_USES)]
        command, preexec = contained(argv, rlimits)
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
        )
        self.uses = 0

    def ask(self, request: bytes, deadline: float, limit: int) -> bytes | Died:
        """One answer line, or Died. Raises TimeoutError past `deadline` (monotonic)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.uses += 1
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return self._died()
        fd = self.proc.stdout.fileno()
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                return self._died()
            got += chunk
            if got.endswith(b"\n"):
                return bytes(got)
            if len(got) > limit:  # too long to be an answer: the child is not trusted further
                self.kill()
                return Died(0)

    def _died(self) -> Died:
        self.kill()
        return Died(self.proc.returncode or 0)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        kill_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._close_pipes()

    def retire(self) -> None:
        """Close its stdin: it exits at EOF. Reaped when next seen, or at the parent's exit."""
        self._close_pipes()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=0.05)

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@dataclass
class ProbeChildren:
    """Idle children per set of rlimits, shared by every thread of one process."""

    _idle: dict[Rlimits, list[_Child]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pid: int = field(default_factory=os.getpid)

    def ask(
        self, args: list[str | int], rlimits: Rlimits, timeout_s: float, limit: int
    ) -> bytes | Died:
        """The child's answer line for one file, or how a fresh child died reading it.
        Raises TimeoutError (the child is killed). Blocking: call it in a thread."""
        request = json.dumps(args).encode() + b"\n"
        deadline = time.monotonic() + timeout_s
        child, reused = self._take(rlimits)
        while True:
            try:
                answer = child.ask(request, deadline, limit)
            except BaseException:
                child.kill()
                raise
            if not isinstance(answer, Died):
                self._give(rlimits, child)
                return answer
            if not reused:
                return answer
            child, reused = _Child(rlimits), False  # only a fresh child's death is a verdict

    def _take(self, rlimits: Rlimits) -> tuple[_Child, bool]:
        with self._lock:
            if self._pid != os.getpid():  # a forked copy: those children are the parent's
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(rlimits, [])
            while idle:
                child = idle.pop()
                if child.alive():
                    return child, True
                child.kill()  # exited while idle (IDLE_S): reap it
        return _Child(rlimits), False

    def _give(self, rlimits: Rlimits, child: _Child) -> None:
        with self._lock:
            idle = self._idle.setdefault(rlimits, [])
            if child.uses < MAX_USES and len(idle) < MAX_IDLE and self._pid == os.getpid():
                idle.append(child)
                return
        child.retire()


CHILDREN = ProbeChildren()
