"""The checker's self-test fleet must really be broken: harness.broken patches the names the
worker calls, so a move of those functions fails here rather than leaving a fenced fleet
that the self-test then calls broken."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from harness import broken
from jobs import claims, fenced, pgsql
from workers import runner


def _sql(clauses: Sequence[sa.ColumnElement[bool]]) -> str:
    return str(sa.and_(*clauses).compile())


def test_break_fence_removes_every_fence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECORD_SUCCESSES_AND_CLAIM_DUE", "RECORD_OUTCOMES_AND_CLAIM_DUE"):
        monkeypatch.setattr(pgsql, name, getattr(pgsql, name))  # restored after the test
    monkeypatch.setattr(fenced, "_fenced", fenced._fenced)
    monkeypatch.setattr(runner, "_Queued", runner._Queued)
    queued = runner._Queued
    assert "fencing_token" in _sql(fenced._fenced(1, 2))
    broken.break_fence()
    assert "fencing_token" not in _sql(fenced._fenced(1, 2))
    assert "status" not in _sql(fenced._fenced(1, 2))
    for name in ("RECORD_SUCCESSES_AND_CLAIM_DUE", "RECORD_OUTCOMES_AND_CLAIM_DUE"):
        assert broken.FENCE not in getattr(pgsql, name)
    assert runner._Queued is not queued  # outcomes are recorded however late


def test_drop_one_wraps_what_the_claims_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fenced, "record_outcomes_and_claim_due", fenced.record_outcomes_and_claim_due)
    real = fenced.record_outcomes_and_claim_due
    broken.drop_one()
    assert fenced.record_outcomes_and_claim_due is not real
    # the claims call it through the module, so they see the wrapper
    assert "fenced.record_outcomes_and_claim_due(" in inspect.getsource(claims)
