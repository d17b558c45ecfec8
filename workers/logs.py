"""Logging set-up for the vidjobs processes.

While Kafka is down aiokafka logs the same connection error about a thousand times a
second; `Throttle` lets one of each through per interval and says how many it dropped.
"""

from __future__ import annotations

import logging
import time


class Throttle(logging.Filter):
    def __init__(self, seconds: float = 5.0, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.seconds = seconds
        self.prefix = prefix
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, dropped = self._last.get(key, (0.0, 0))
        if now - last < self.seconds:
            self._last[key] = (last, dropped + 1)
            return False
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it in the last {self.seconds:g} s)"
        self._last[key] = (now, 0)
        if len(self._last) > 10_000:
            self._last.clear()
        return True


def setup(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    throttle = Throttle()  # on the handlers: it sees records from every aiokafka logger
    for handler in logging.getLogger().handlers:
        handler.addFilter(throttle)
