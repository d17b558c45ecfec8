"""Two-pass EBU R128 loudness: the filters of each pass, and a strict reader of what the
first pass prints.

ffmpeg's `loudnorm` filter reports its measurement only as a JSON block in the log, so that
block is read here as untrusted text: the last `[Parsed_loudnorm_N @ 0x...]` header, then a
JSON object of at most 40 lines, with every value a decimal number inside a stated bound.
Anything else fails the job with a clear message rather than guessing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.media_ops import Loudnorm
from workers.ffmpeg.graph import F, f, num
from workers.ffmpeg.probe import invalid

_HEADER = re.compile(r"^\[Parsed_loudnorm_\d{1,3} @ 0x[0-9a-f]{1,16}\]\s*$")
_NUMBER = re.compile(r"^[+-]?\d{1,3}(?:\.\d{1,4})?$")
# (name in loudnorm's JSON, lower bound, upper bound)
_FIELDS = (
    ("input_i", -99.0, 0.0),
    ("input_tp", -99.0, 30.0),
    ("input_lra", 0.0, 99.0),
    ("input_thresh", -120.0, 0.0),
    ("target_offset", -99.0, 99.0),
)
MEASURE_LOGLEVEL = ("-loglevel", "info")  # loudnorm prints its JSON at info level
KEEP_LINES = 80
# loudnorm works on 3 s windows: below that its measurement and its dynamic mode go wrong
# (measured: a 1.5 s cut of -30 LUFS noise read as -41 LUFS and came out at -43).
MIN_MS = 3000


@dataclass(frozen=True)
class Measured:
    """What the first pass measured (LUFS, dBTP, LU)."""

    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float


def measure_filter(op: Loudnorm | None = None) -> F:
    """The first pass: measure only (the output is thrown away)."""
    if op is None:  # measuring a finished file: the targets do not matter
        return f("loudnorm", print_format="json")
    return f("loudnorm", **_targets(op), print_format="json")


def apply_filter(op: Loudnorm, m: Measured) -> F:
    """The second pass: normalise with the measured values (linear when loudnorm can)."""
    measured = {
        "measured_I": num(m.input_i),
        "measured_TP": num(m.input_tp),
        "measured_LRA": num(m.input_lra),
        "measured_thresh": num(m.input_thresh),
        "offset": num(m.target_offset),
    }
    return f("loudnorm", **_targets(op), **measured, linear="true")


def _targets(op: Loudnorm) -> dict[str, str]:
    return {"I": num(op.target_lufs), "TP": num(op.true_peak_db), "LRA": num(op.lra)}


def parse_measurement(lines: Sequence[str]) -> Measured:
    """The last loudnorm JSON block in ffmpeg's log, checked field by field."""
    start = max((i for i, line in enumerate(lines) if _HEADER.match(line.strip())), default=None)
    if start is None:
        raise invalid("measuring the loudness printed no loudnorm result")
    block = [line.strip() for line in lines[start + 1 : start + 41]]
    try:
        end = block.index("}")
    except ValueError:
        raise invalid("the loudness measurement was cut short") from None
    try:
        data = json.loads("\n".join(block[: end + 1]))
    except ValueError:
        raise invalid("the loudness measurement is not the JSON loudnorm prints") from None
    if not isinstance(data, dict):
        raise invalid("the loudness measurement is not the JSON loudnorm prints")
    values: dict[str, float] = {}
    for name, lo, hi in _FIELDS:
        text = data.get(name)
        if text in ("-inf", "inf") and name in ("input_i", "input_thresh"):
            raise invalid("the audio is silent: its loudness cannot be normalised")
        if not isinstance(text, str) or not _NUMBER.match(text):
            raise invalid(f"the loudness measurement has no usable {name}")
        value = float(text)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise invalid(f"the loudness measurement's {name} ({value}) is out of range")
        values[name] = value
    return Measured(**values)
