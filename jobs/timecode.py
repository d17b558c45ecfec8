"""Times in edit requests: seconds as a number, or a string, always stored as integer ms."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

MAX_MS = 24 * 3600 * 1000  # one day: longer than any video we accept

_CLOCK = re.compile(r"^(?:(\d{1,2}):)?(\d{1,2}):(\d{1,2}(?:\.\d{1,3})?)$")
_UNIT = re.compile(r"^(\d{1,8}(?:\.\d{1,3})?)(ms|s)?$")


def parse_ms(value: Any) -> int:
    """Turn 1.5, "1.5", "1.5s", "1500ms" or "00:00:01.500" into 1500.

    Rejects negatives, NaN, more than millisecond precision and anything over a day.
    """
    if isinstance(value, bool):
        raise ValueError("a time must be a number of seconds or a string like '00:01:02.500'")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a time must be a finite number of seconds")
        if value < 0:
            raise ValueError("a time must not be negative")
        if value > MAX_MS / 1000:
            raise ValueError(f"a time must be at most {MAX_MS // 1000} seconds")
        ms = round(value * 1000)
        if abs(value * 1000 - ms) > 1e-6:
            raise ValueError("a time has at most millisecond precision (3 decimals)")
        return int(ms)
    if isinstance(value, str):
        text = value.strip()
        if m := _CLOCK.match(text):
            hours, minutes, seconds = m.group(1), m.group(2), m.group(3)
            if int(minutes) >= 60 or float(seconds) >= 60:
                raise ValueError("minutes and seconds in a time must be below 60")
            total = (int(hours or 0) * 3600 + int(minutes) * 60) * 1000
            return _checked(total + _decimal_ms(seconds))
        if m := _UNIT.match(text):
            number, unit = m.group(1), m.group(2) or "s"
            if unit == "ms":
                if "." in number:
                    raise ValueError("milliseconds must be a whole number")
                return _checked(int(number))
            return _checked(_decimal_ms(number))
        raise ValueError(
            "a time must be seconds (1.5), '1.5s', '1500ms' or a clock time ('00:00:01.500')"
        )
    raise ValueError("a time must be a number of seconds or a string like '00:01:02.500'")


def _decimal_ms(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


def _checked(ms: int) -> int:
    if ms > MAX_MS:
        raise ValueError(f"a time must be at most {MAX_MS // 1000} seconds")
    return ms


Millis = Annotated[int, BeforeValidator(parse_ms)]
