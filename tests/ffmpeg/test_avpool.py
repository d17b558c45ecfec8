"""Long-lived probe children (`workers/ffmpeg/avpool.py`): one child reads many files, and no
file's answer depends on what the child read before, how it died, or when it was replaced."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError
from workers.ffmpeg import avpool
from workers.ffmpeg.avpool import ProbeChildren
from workers.ffmpeg.probe import probe
from workers.ffmpeg.run import Limits

pytestmark = pytest.mark.ffmpeg


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> ProbeChildren:
    """A pool of this test's own, in place of the process-wide one."""
    pool = ProbeChildren()
    monkeypatch.setattr("workers.ffmpeg.avprobe.CHILDREN", pool)
    return pool


def pids(pool: ProbeChildren) -> list[int]:
    return [c.proc.pid for idle in pool._idle.values() for c in idle]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie not yet reaped is gone too
        return f.read().split()[2] == "Z"


async def test_one_child_reads_many_files(media: Any, children: ProbeChildren) -> None:
    first = await probe(media.clip)
    [pid] = pids(children)
    for _ in range(3):
        assert await probe(media.clip) == first
    assert pids(children) == [pid]


async def test_a_child_that_died_while_idle_is_replaced_and_the_file_still_read(
    media: Any, children: ProbeChildren
) -> None:
    expected = await probe(media.clip)
    [pid] = pids(children)
    os.kill(pid, signal.SIGKILL)
    assert await probe(media.clip) == expected
    [again] = pids(children)
    assert again != pid


async def test_a_reused_child_dying_mid_file_is_not_the_verdict(
    media: Any, children: ProbeChildren, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child is killed after it took the request (as a limit its earlier files used up
    would): the file is asked again of a fresh child, and its answer stands."""
    expected = await probe(media.clip)
    [pid] = pids(children)
    real = avpool._Child.ask

    def dies_once(self: avpool._Child, request: bytes, deadline: float, limit: int) -> Any:
        if self.proc.pid == pid:
            os.kill(pid, signal.SIGKILL)
        return real(self, request, deadline, limit)

    monkeypatch.setattr(avpool._Child, "ask", dies_once)
    assert await probe(media.clip) == expected
    assert pid not in pids(children) and gone(pid)


async def test_a_fresh_childs_death_is_the_verdict(media: Any, children: ProbeChildren) -> None:
    """Under a memory limit Python cannot start in, every child dies: one retry at most,
    then the file is refused in the words of the limit, and nothing is kept."""
    with pytest.raises(PermanentError, match=r"probing the source (failed|was stopped)"):
        await probe(media.clip, Limits(memory_bytes=16 * 1024 * 1024))
    assert pids(children) == []


async def test_a_timeout_kills_the_child(
    media: Any, children: ProbeChildren, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[int] = []
    real = avpool._Child.__init__

    def recorded(self: avpool._Child, rlimits: avpool.Rlimits) -> None:
        real(self, rlimits)
        spawned.append(self.proc.pid)

    monkeypatch.setattr(avpool._Child, "__init__", recorded)
    with pytest.raises(PermanentError, match=r"took longer than 0\.001 s and was stopped"):
        await probe(media.clip, Limits(probe_timeout_s=0.001))
    assert pids(children) == [] and len(spawned) == 1 and gone(spawned[0])


async def test_a_child_is_replaced_after_max_uses(
    media: Any, children: ProbeChildren, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(avpool, "MAX_USES", 2)
    await probe(media.clip)
    [pid] = pids(children)
    await probe(media.clip)  # its second and last file: retired, not kept
    assert pids(children) == []
    await probe(media.clip)
    assert pids(children) not in ([], [pid])


async def test_other_limits_get_children_of_their_own(
    media: Any, children: ProbeChildren
) -> None:
    await probe(media.clip)
    await probe(media.clip, Limits(memory_bytes=3 * 1024**3))
    assert len(children._idle) == 2 and len(pids(children)) == 2


def test_a_child_exits_by_itself_when_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avpool, "IDLE_S", 0.2)
    child = avpool._Child(Limits().rlimits(30))
    assert child.proc.wait(timeout=20) == 0
