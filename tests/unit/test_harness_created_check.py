"""The harness's count of 201s per key: one per creation and one per re-run, where a
lost answer (its retry replayed with 200) explains one missing, whatever the request's kind."""

from __future__ import annotations

from harness.audit import wrong_201s
from harness.load import Answer


def answer(kind: str, status: int, key: str = "k", attempts: int = 1) -> Answer:
    return Answer(kind, 0, status, key, status == 200, attempts)


def test_one_201_and_replays_pass() -> None:
    answers = [answer("new", 201), answer("twin", 200), answer("twin", 200)]
    assert wrong_201s(answers, {"k": 0}) == ([], [])


def test_a_second_201_is_a_double() -> None:
    answers = [answer("new", 201), answer("reordered", 201)]
    assert wrong_201s(answers, {"k": 0}) == (["k"], [])


def test_a_rerun_after_a_failure_adds_one_201() -> None:
    answers = [answer("new", 201), answer("after_completion", 201)]
    assert wrong_201s(answers, {"k": 1}) == ([], [])
    assert wrong_201s(answers, {"k": 0}) == (["k"], [])


def test_a_lost_201_of_a_duplicate_that_came_first_is_explained() -> None:
    # The twin reached the API before the edit's own submission, made the job, and lost
    # its answer to a reset: its retry is replayed; the edit's submission is replayed too.
    answers = [answer("twin", 200, attempts=2), answer("twin", 200), answer("new", 200)]
    assert wrong_201s(answers, {"k": 0}) == ([], ["k"])


def test_a_lost_201_of_a_resubmission_is_explained() -> None:
    answers = [answer("new", 201), answer("after_completion", 200, attempts=3)]
    assert wrong_201s(answers, {"k": 1}) == ([], ["k"])


def test_no_201_and_no_retry_is_wrong() -> None:
    assert wrong_201s([answer("new", 200)], {"k": 0}) == (["k"], [])


def test_a_retry_explains_only_one_missing_201() -> None:
    answers = [answer("new", 200, attempts=2)]
    assert wrong_201s(answers, {"k": 1}) == (["k"], [])
