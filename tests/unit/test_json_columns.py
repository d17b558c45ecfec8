"""JSON columns are read with orjson, and with the stdlib's decoder for what orjson refuses."""

from __future__ import annotations

import json
import math

import pytest

from jobs.db import read_json


@pytest.mark.parametrize(
    "text",
    ['{"a": [1, 2.5, "é", null, true], "b": {"c": -3}}', '"\\u00e9\\n"', "[]", '{"a":1,"a":2}'],
)
def test_ordinary_json_reads_as_the_stdlib_reads_it(text: str) -> None:
    assert read_json(text) == json.loads(text)
    assert read_json(text.encode()) == json.loads(text)


def test_what_only_pythons_writer_produces_still_reads() -> None:
    """json.dumps writes NaN and infinities bare and lone surrogates escaped; orjson refuses
    all three, so a value stored that way must not make its row unreadable."""
    assert math.isnan(read_json(json.dumps({"x": math.nan}))["x"])
    assert read_json(json.dumps([-math.inf, math.inf])) == [-math.inf, math.inf]
    assert read_json(json.dumps("\ud800")) == "\ud800"


def test_text_that_is_not_json_is_still_an_error() -> None:
    with pytest.raises(ValueError):
        read_json("{not json")
