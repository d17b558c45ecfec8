"""The delivery fields and operations (issue 13): bounds, enums, impossible combinations
named by JSON path at submission, and canonical forms that leave old keys alone."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs.api.errors import describe
from jobs.canonical import canonical_edit
from jobs.keys import job_key
from jobs.spec import EditRequest

D1 = "sha256:" + "ab" * 32
INJECTIONS = [
    "'",
    ";",
    "[0:v]null[out]",
    "drawtext=text='%{pts}'",
    "x;rm -rf /",
    "file:///etc/passwd",
    "a\x00b",
    "-f lavfi",
    "\u202e",
    "x" * 5000,
    "16:9,movie=/etc/passwd",
]


def edit(ops: list[dict[str, Any]] | None = None, **output: Any) -> dict[str, Any]:
    return {"source": {"digest": D1}, "operations": ops or [], "output": output}


def errors_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        EditRequest.model_validate(body)
    return describe(list(info.value.errors()))


def key(body: dict[str, Any]) -> str:
    return job_key("t", canonical_edit(EditRequest.model_validate(body), [D1]))


def canon(body: dict[str, Any]) -> dict[str, Any]:
    return canonical_edit(EditRequest.model_validate(body), [D1])


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (edit([{"op": "loudnorm"}, {"op": "mute"}]), "operations[0]", "needs audio"),
        (edit([{"op": "loudnorm"}], audio_codec="none"), "operations[0]", "needs audio"),
        (edit([{"op": "fade", "fade_in": 1, "video": False}], audio_codec="none"),
         "operations[0]", "needs audio"),
        (edit([{"op": "scale", "width": 64}], container="mp3"), "operations[0]", "audio only"),
        (edit([{"op": "pad", "aspect": "1:1"}], container="webm", video_codec="none"),
         "operations[0]", "needs a video output"),
        (edit([{"op": "fade", "fade_in": 1, "audio": False}], container="wav"),
         "operations[0].audio", "only fade audio"),
        (edit(container="mp3", crf=20), "output.crf", "needs a video output"),
        (edit(container="flac", audio_bitrate_kbps=128), "output.audio_bitrate_kbps", "lossless"),
        (edit(container="mp3", audio_codec="aac"), "output.audio_codec", "allowed: mp3"),
        (edit(container="gif", preset="fast"), "output.preset", "does not apply"),
        (edit(container="mp4", bit_depth=10), "output.bit_depth", "hevc, vp9, av1"),
        (edit(container="mp4", preset="good"), "output.preset", "ultrafast"),
        (edit(container="webm", preset="medium"), "output.preset", "realtime, good, best"),
        (edit(container="webm", profile="main"), "output.profile", "none"),
        (edit(container="mp4", two_pass=True), "output.two_pass", "video_bitrate_kbps"),
        (edit(container="mp4", video_codec="av1", video_bitrate_kbps=500, two_pass=True),
         "output.two_pass", "h264, hevc, vp9"),
        (edit(max_bitrate_kbps=1000), "output.buffer_size_kbits", "together"),
        (edit(video_codec="hevc", profile="main10", bit_depth=8), "output.profile", "bit_depth 10"),
        (edit(audio_codec="none", audio_channels=2), "output.audio_channels", "needs audio"),
        (edit(container="ogg", audio_sample_rate=44100), "output.audio_sample_rate", "48000"),
        (edit(container="mp3", audio_sample_rate=96000), "output.audio_sample_rate", "44100"),
    ],
)  # fmt: skip
def test_impossible_combinations_name_the_json_path(
    body: dict[str, Any], path: str, words: str
) -> None:
    details = errors_of(body)
    assert details[0]["path"] == path
    assert words in details[0]["message"]


@pytest.mark.parametrize(
    ("op", "path"),
    [
        ({"op": "loudnorm", "target_lufs": -80}, "operations[0].target_lufs"),
        ({"op": "loudnorm", "true_peak_db": 3}, "operations[0].true_peak_db"),
        ({"op": "loudnorm", "lra": 0}, "operations[0].lra"),
        ({"op": "pad", "aspect": "5:3"}, "operations[0].aspect"),
        ({"op": "pad", "width": 99999, "height": 100}, "operations[0].width"),
        ({"op": "pad", "aspect": "16:9", "color": "red"}, "operations[0].color"),
        ({"op": "deinterlace", "filter": "kerndeint"}, "operations[0].filter"),
        ({"op": "fade", "fade_in": -1}, "operations[0].fade_in"),
    ],
)
def test_operation_bounds_and_enums(op: dict[str, Any], path: str) -> None:
    assert errors_of(edit([op]))[0]["path"] == path


@pytest.mark.parametrize(
    "op",
    [{"op": "pad"}, {"op": "pad", "width": 100}, {"op": "fade"}, {"op": "fade", "fade_in": 700}],
)
def test_incomplete_operations_are_refused(op: dict[str, Any]) -> None:
    assert errors_of(edit([op]))


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "where",
    ["deinterlace.filter", "pad.aspect", "pad.color", "fade.fade_in", "loudnorm.lra",
     "output.preset", "output.profile", "output.level", "output.keyframe_interval",
     "output.audio_sample_rate", "output.audio_channels", "output.bit_depth",
     "output.gop_length", "output.two_pass"],
)  # fmt: skip
def test_injection_strings_in_every_new_field_are_refused(where: str, value: str) -> None:
    kind, field = where.split(".")
    if kind == "output":
        body = edit(**{field: value})
    else:
        base = {"pad": {"aspect": "16:9"}, "fade": {"fade_in": 1}}.get(kind, {})
        body = edit([{"op": kind, **base, field: value}])
    details = errors_of(body)
    assert details and all(d["message"] for d in details)


def test_new_fields_left_out_leave_the_canonical_form_as_it_was() -> None:
    out = canon(edit([{"op": "scale", "width": 640}]))["output"]
    assert out == {
        "container": "mp4", "video_codec": "h264", "audio_codec": "aac", "crf": 23,
        "video_bitrate_kbps": None, "audio_bitrate_kbps": 128,
    }  # fmt: skip


def test_spelling_out_what_the_encoder_does_anyway_keeps_the_key() -> None:
    assert key(edit()) == key(edit(preset="medium", two_pass=False))
    assert key(edit(container="webm")) == key(edit(container="webm", preset="good"))
    assert key(edit()) != key(edit(preset="fast"))


def test_new_settings_are_in_the_key_and_canonical_resubmits() -> None:
    body = edit(
        [{"op": "fade", "fade_in": "500ms", "fade_out": 1}, {"op": "loudnorm", "lra": 7.04}],
        video_codec="hevc", bit_depth=10, keyframe_interval=2, level="4.1",
        max_bitrate_kbps=4000, buffer_size_kbits=8000, audio_sample_rate=48000,
    )  # fmt: skip
    c = canon(body)
    assert c["operations"][0] == {
        "op": "fade", "fade_in_ms": 500, "fade_out_ms": 1000, "video": True, "audio": True,
    }  # fmt: skip
    assert c["operations"][1]["lra"] == 7.0
    assert c["output"]["keyframe_interval_ms"] == 2000 and c["output"]["bit_depth"] == 10
    again = {"source": {"digest": D1}, "operations": c["operations"], "output": c["output"]}
    assert key(again) == key(body)
    assert key(body) != key({**body, "output": {**body["output"], "bit_depth": None}})


def test_audio_only_outputs_have_their_own_defaults() -> None:
    assert canon(edit(container="mp3"))["output"] == {
        "container": "mp3", "video_codec": "none", "audio_codec": "mp3", "crf": None,
        "video_bitrate_kbps": None, "audio_bitrate_kbps": 128,
    }  # fmt: skip
    wav = canon(edit(container="wav", audio_channels=2))["output"]
    assert (wav["audio_codec"], wav["audio_bitrate_kbps"], wav["audio_channels"]) == (
        "pcm_s16le", None, 2,
    )  # fmt: skip
    assert canon(edit(container="webm", video_codec="none"))["output"]["audio_codec"] == "opus"


PINNED = [  # derived once; a change here changes every such job's key
    "vj1_b6a8fee674480ef24813dba0b795a1bf73448d0517fc47b49178586af4fdcc36",
    "vj1_bd536cfe553db2c0ce618b89893424f59c5d1c5a47c19e9119ad5398236772f8",
]


def test_golden_keys_of_new_edits_are_pinned() -> None:
    podcast = edit([{"op": "loudnorm", "target_lufs": -16, "true_peak_db": -1.5, "lra": 11}],
                   container="mp3", audio_channels=2)  # fmt: skip
    broadcast = edit([{"op": "deinterlace", "auto": True}, {"op": "pad", "aspect": "16:9"}],
                     video_codec="hevc", preset="slow", gop_length=50)  # fmt: skip
    assert [key(podcast), key(broadcast)] == PINNED


def test_auto_crop_rules_and_a_rectangle_keeps_its_canonical_form() -> None:
    rect = canon(edit([{"op": "crop", "x": 2, "y": 4, "width": 100, "height": 50}]))
    assert rect["operations"][0] == {"op": "crop", "x": 2, "y": 4, "width": 100, "height": 50}
    auto = canon(edit([{"op": "trim", "start": 1}, {"op": "crop", "crop": "auto"}]))
    assert auto["operations"][1]["crop"] == "auto"
    assert (
        errors_of(edit([{"op": "scale", "width": 64}, {"op": "crop", "crop": "auto"}]))[0]["path"]
        == "operations[1]"
    )
    assert errors_of(edit([{"op": "crop", "crop": "auto", "width": 64, "height": 64}]))
    assert errors_of(edit([{"op": "crop", "crop": "yes"}]))[0]["path"] == "operations[0].crop"
    assert errors_of(edit([{"op": "crop", "width": 64}]))
