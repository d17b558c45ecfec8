"""Repeated library log lines are throttled; our own are not."""

from __future__ import annotations

import logging

from workers.logs import Throttle


def record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_repeats_within_the_interval_are_dropped_and_counted() -> None:
    throttle = Throttle(seconds=60)
    assert throttle.filter(record("aiokafka", "Unable connect to node %s"))
    assert not any(throttle.filter(record("aiokafka", "Unable connect to node %s")) for _ in range(100))
    assert throttle.filter(record("aiokafka.cluster", "Topic missing"))
    assert all(throttle.filter(record("vidjobs.runner", "same")) for _ in range(5))


def test_the_next_line_after_the_interval_says_how_many_were_dropped() -> None:
    throttle = Throttle(seconds=0)
    throttle.seconds = 60
    assert throttle.filter(record("aiokafka", "x"))
    throttle.filter(record("aiokafka", "x"))
    throttle.seconds = 0
    r = record("aiokafka", "x")
    assert throttle.filter(r) and "1 more like it" in str(r.msg)


def _json_lines(capsys: object) -> list[dict[str, object]]:
    import json

    out = capsys.readouterr().err  # type: ignore[attr-defined]
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_json_lines_carry_the_job_of_the_task_that_logged_them(capsys: object) -> None:
    import asyncio
    from types import SimpleNamespace

    from workers.logs import job_context, setup

    setup(fmt="json")
    log = logging.getLogger("vidjobs.runner")

    async def job_task(n: int) -> None:
        await asyncio.sleep(0)
        log.warning("lost the lease on %s", f"job{n}")

    async def main() -> None:
        jobs = [SimpleNamespace(key=f"vj1_{n}", tenant_id=f"t{n}", attempts=n, fencing_token=10 + n) for n in (1, 2)]
        await asyncio.gather(*(asyncio.create_task(job_task(n), context=job_context(j)) for n, j in zip((1, 2), jobs, strict=True)))
        task = SimpleNamespace(key="vt1_3", tenant_id="t3", attempts=3, fencing_token=13, role="task", spec={"kind": "rendition"})
        await asyncio.create_task(job_task(3), context=job_context(task))
        log.info("not about a job", extra={"owner": "w1"})

    asyncio.run(main())
    lines = _json_lines(capsys)
    about = {line["job_key"]: line for line in lines if "job_key" in line}
    assert about["vj1_1"]["tenant"] == "t1" and about["vj1_1"]["attempt"] == 1 and about["vj1_1"]["fencing_token"] == 11
    assert about["vj1_2"]["event"] == "lost the lease on job2" and about["vj1_2"]["level"] == "warning"
    plain = next(line for line in lines if line["event"] == "not about a job")
    task = next(line for line in lines if line.get("task") == "vt1_3")
    assert task["task_kind"] == "rendition" and "job_key" not in task and task["attempt"] == 3
    assert "job_key" not in plain and plain["owner"] == "w1" and plain["logger"] == "vidjobs.runner"
    logging.getLogger().handlers.clear()


def test_console_format_is_one_readable_line(capsys: object) -> None:
    from workers.logs import setup

    setup(fmt="console")
    logging.getLogger("vidjobs.relay").info("relay is active")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "relay is active" in err and "[vidjobs.relay]" in err and not err.lstrip().startswith("{")
    logging.getLogger().handlers.clear()
