"""A chunk task's planned start times (`starts_ms`, from `jobs.chunking.starts_ms`) are
checked before they are used: anything but n ascending integers from 0 is an invalid spec,
never a crash or a wrong frame range. A task planned before start times were in the spec
(`chunk_seconds` only) still plans chunks that far apart."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from jobs.chunking import starts_ms
from jobs.errors import PermanentError
from workers.ffmpeg.chunked import start_times


def test_planned_start_times_become_seconds() -> None:
    planned = starts_ms(60_000, 6.0)
    times = start_times({"starts_ms": planned}, len(planned))
    assert times[:2] == [0, 6] and times[-2:] == [Fraction(54), Fraction(57)]


def test_a_task_planned_with_chunk_seconds_only_still_plans_equal_chunks() -> None:
    assert start_times({"chunk_seconds": 2.5}, 3) == [0, Fraction(5, 2), 5]
    with pytest.raises(PermanentError, match="chunk_seconds"):
        start_times({"chunk_seconds": 0.5}, 3)


@pytest.mark.parametrize(
    "starts",
    [
        [0, 6000],  # not as many as slots
        [0, 6000, 6000],  # not ascending
        [1000, 6000, 9000],  # not from 0
        [0, 6000.5, 9000],  # not integers
        [0, True, 9000],
        "0,6000,9000",
        {"0": 1},
    ],
)
def test_start_times_that_are_not_n_ascending_integers_from_0_are_refused(starts: Any) -> None:
    with pytest.raises(PermanentError, match="'starts_ms' must be 3 ascending integers") as info:
        start_times({"starts_ms": starts}, 3)
    assert info.value.code == "invalid_spec"
