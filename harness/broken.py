"""A deliberately broken worker, for the checker's self-test (never for real use).

    python -m harness.broken fence worker --executor sleep ...   # no fence on finishing
    python -m harness.broken drop worker --executor sleep ...    # loses one job per process

fence: the statements lose their fencing condition (`status = running AND fencing_token =
token`: the outcome statement and every `_fenced` one, heartbeats included) and the worker
its own check of its lease before recording, so a zombie whose lease was taken over still
finishes its job: the audit must see a second completion. drop: the first success this process records is
written as a cancellation nobody asked for, so that job never ends succeeded or failed: the
audit must see a lost job. Then `workers.cli` runs as usual.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from jobs import fenced, pgsql, statements
from jobs.outcomes import Outcome, OutcomeKind
from jobs.status import JobStatus

FENCE = f"jobs.status = '{JobStatus.RUNNING.value}' AND jobs.fencing_token = o.token"


def _no_deadline(queued: Any) -> Any:
    """workers.runner._Queued without its deadline: the outcome is recorded however late."""

    def make(outcome: Outcome, deadline: float, *rest: Any) -> Any:
        return queued(outcome, float("inf"), *rest)

    return make


def break_fence() -> None:
    from workers import runner

    fields = [f.name for f in dataclasses.fields(runner._Queued)]
    assert fields[:2] == ["outcome", "deadline"], f"workers.runner._Queued is now {fields}; update harness.broken"
    runner._Queued = _no_deadline(runner._Queued)  # type: ignore[misc]
    assert callable(getattr(fenced, "_fenced", None)), "jobs.fenced._fenced moved; update harness.broken"
    fenced._fenced = lambda job_id, token: (statements.c.id == job_id,)
    for name in ("RECORD_SUCCESSES_AND_CLAIM_DUE", "RECORD_OUTCOMES_AND_CLAIM_DUE"):
        sql = getattr(pgsql, name)
        assert FENCE in sql, f"the fence of pgsql.{name} changed; update harness.broken"
        setattr(pgsql, name, sql.replace(FENCE, "true"))


def drop_one() -> None:
    real = fenced.record_outcomes_and_claim_due
    dropped: list[str] = []

    async def dropping(conn: Any, outcomes: Sequence[Outcome], *args: Any, **kwargs: Any) -> Any:
        changed = list(outcomes)
        for i, o in enumerate(changed):
            if not dropped and o.kind is OutcomeKind.SUCCEEDED:
                dropped.append(o.job.key)
                changed[i] = dataclasses.replace(o, kind=OutcomeKind.CANCELLED, output=None)
                print(f"harness.broken: dropping {o.job.key}", file=sys.stderr, flush=True)
        return await real(conn, changed, *args, **kwargs)

    fenced.record_outcomes_and_claim_due = dropping


def main() -> None:
    mode, argv = sys.argv[1], sys.argv[2:]
    {"fence": break_fence, "drop": drop_one}[mode]()
    from workers.cli import main as cli

    cli(argv)


if __name__ == "__main__":
    main()
