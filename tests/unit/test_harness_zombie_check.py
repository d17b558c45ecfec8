"""The harness's zombie check on outbox histories: a success must follow its own claim."""

from __future__ import annotations

from harness.audit_tasks import zombie_finishes


def test_a_success_right_after_its_claim_passes() -> None:
    events = [
        ("a", "job.claimed", "1", "1"),
        ("b", "task.claimed", "1", "1"),
        ("a", "job.requeued", "1", "1"),  # lease rescued
        ("a", "job.claimed", "2", "2"),
        ("b", "task.succeeded", "1", "1"),
        ("a", "job.succeeded", "2", "2"),
    ]
    assert zombie_finishes(events) == []


def test_a_success_after_a_rescue_is_a_zombie() -> None:
    events = [("a", "job.claimed", "1", "1"), ("a", "job.requeued", "1", "1"), ("a", "job.succeeded", "1", "1")]
    assert zombie_finishes(events) == ["a"]


def test_a_second_success_after_the_new_owners_claim_is_a_zombie() -> None:
    events = [
        ("t", "task.claimed", "1", "1"),
        ("t", "task.requeued", "1", "1"),
        ("t", "task.claimed", "2", "2"),
        ("t", "task.succeeded", "2", "2"),  # the zombie, recorded under the new token
        ("t", "task.succeeded", "2", "2"),  # the owner
    ]
    assert zombie_finishes(events) == ["t"]


def test_a_success_under_another_token_than_its_claim_is_a_zombie() -> None:
    events = [("a", "job.claimed", "3", "3"), ("a", "job.succeeded", "2", "2")]
    assert zombie_finishes(events) == ["a"]
    assert zombie_finishes([("a", "job.succeeded", "1", "1")]) == ["a"]  # never claimed


def test_a_finished_row_opened_again_is_a_zombie() -> None:
    """A zombie's late release (or retry) puts a succeeded job back in the queue; the next
    claim and success then look regular, so the re-opening itself is what gives it away."""
    events = [
        ("a", "job.claimed", "1", "1"),
        ("a", "job.requeued", "1", "1"),  # lease rescued
        ("a", "job.claimed", "2", "2"),
        ("a", "job.succeeded", "2", "2"),  # the new owner
        ("a", "job.requeued", "2", "1"),  # the zombie's release, unfenced
        ("a", "job.claimed", "3", "2"),
        ("a", "job.succeeded", "3", "2"),
    ]
    assert zombie_finishes(events) == ["a"]
    rerun = [
        ("b", "job.claimed", "1", "1"),
        ("b", "job.failed", "1", "1"),
        ("b", "job.resubmitted", "1", "0"),  # a resubmission of a failed job is no zombie
        ("b", "job.claimed", "2", "1"),
        ("b", "job.succeeded", "2", "1"),
    ]
    assert zombie_finishes(rerun) == []
