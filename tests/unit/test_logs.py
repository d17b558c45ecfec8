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
