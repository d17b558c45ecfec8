"""Edit requests: bounded numbers, enums, coherent combinations, errors that name the path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs.api.errors import describe
from jobs.canonical import canonical_output
from jobs.spec import EditRequest
from jobs.timecode import parse_ms

D1 = "sha256:" + "ab" * 32


def errors_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        EditRequest.model_validate(body)
    return describe(list(info.value.errors()))


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (0, 0),
        (1.5, 1500),
        ("1.5", 1500),
        ("1.50", 1500),
        ("1500ms", 1500),
        ("2s", 2000),
        ("00:01:02.5", 62500),
        ("1:02", 62000),
    ],
)
def test_times_become_integer_milliseconds(value: Any, ms: int) -> None:
    assert parse_ms(value) == ms


@pytest.mark.parametrize(
    "value", [-1, "abc", 1.0001, float("nan"), float("inf"), True, "1:61", "99999999999", None]
)
def test_bad_times_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_ms(value)


def test_error_names_the_json_path_and_what_is_allowed() -> None:
    details = errors_of(
        {"source": {"digest": D1}, "operations": [{"op": "mute"}, {"op": "scale", "width": 99999}]}
    )
    assert details[0]["path"] == "operations[1].width"
    assert details[0]["allowed"] == {"le": 7680}


def test_unknown_operation_lists_the_known_ones() -> None:
    details = errors_of({"source": {"digest": D1}, "operations": [{"op": "explode"}]})
    assert details[0]["path"] == "operations[0]"
    assert "trim" in details[0]["allowed"]


def test_unknown_fields_are_refused() -> None:
    details = errors_of(
        {"source": {"digest": D1}, "operations": [{"op": "mute", "filter": "rm -rf"}]}
    )
    assert details[0]["path"] == "operations[0].filter"


@pytest.mark.parametrize(
    "source",
    [
        {"path": "../../etc/passwd"},
        {"path": "a/../../b"},
        {"path": "x\x00y"},
        {"path": "a\nb"},
        {"digest": "sha256:xyz"},
        {"digest": D1, "path": "a"},
        {},
    ],
)
def test_bad_sources_are_refused(source: dict[str, Any]) -> None:
    details = errors_of({"source": source})
    assert details[0]["path"].startswith("source")


@pytest.mark.parametrize(
    ("ops", "output", "fragment"),
    [
        ([{"op": "scale", "width": 64}, {"op": "trim", "end": 1}], {}, "'trim' must come first"),
        ([{"op": "thumbnail"}, {"op": "mute"}], {"container": "jpg"}, "must be the last"),
        ([{"op": "thumbnail"}], {}, "needs output container"),
        ([], {"container": "png"}, "needs output container"),
        ([{"op": "mute"}, {"op": "volume", "db": 3}], {}, "cannot be combined"),
        ([], {"container": "webm", "video_codec": "h264"}, "not allowed in 'webm'"),
        ([], {"container": "mp4", "crf": 20, "video_bitrate_kbps": 1000}, "not both"),
        ([], {"container": "gif", "video_codec": "h264"}, "does not apply"),
        ([{"op": "mute"}], {"audio_codec": "aac"}, "removes the audio"),
        ([{"op": "trim", "start": 5, "end": 2}], {}, "after 'start'"),
        ([{"op": "mute"}, {"op": "mute"}], {}, "at most once"),
        ([], {"video_codec": "h264", "crf": 60}, "at most 51"),
    ],
)
def test_incoherent_edits_are_refused(
    ops: list[Any], output: dict[str, Any], fragment: str
) -> None:
    details = errors_of({"source": {"digest": D1}, "operations": ops, "output": output})
    assert any(fragment in d["message"] for d in details), details


def test_labels_are_checked() -> None:
    assert errors_of({"source": {"digest": D1}, "labels": {"Bad Key": "x"}})[0]["path"] == "labels"
    assert errors_of({"source": {"digest": D1}, "labels": {"k": "a\x00b"}})[0]["path"] == "labels"


def test_output_defaults_follow_the_container() -> None:
    webm = EditRequest.model_validate({"source": {"digest": D1}, "output": {"container": "webm"}})
    assert canonical_output(webm) == {
        "container": "webm",
        "video_codec": "vp9",
        "audio_codec": "opus",
        "crf": 32,
        "video_bitrate_kbps": None,
        "audio_bitrate_kbps": 128,
    }
    muted = EditRequest.model_validate({"source": {"digest": D1}, "operations": [{"op": "mute"}]})
    assert canonical_output(muted)["audio_codec"] == "none"
    assert canonical_output(muted)["audio_bitrate_kbps"] is None
