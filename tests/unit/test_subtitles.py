"""Uploaded subtitle files are parsed strictly and re-written as plain cues; subtitle
operations only go where they can work."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs import subtitles
from jobs.api.errors import describe
from jobs.canonical import canonical_edit
from jobs.spec import EditRequest

D1 = "sha256:" + "ab" * 32
D2 = "sha256:" + "cd" * 32


def test_srt_and_webvtt_parse_to_the_same_cues() -> None:
    srt = b"\xef\xbb\xbf1\r\n00:00:01,000 --> 00:00:02,500\r\n<b>Hi</b> there\r\nline 2\r\n\r\n"
    vtt = b"WEBVTT - title\n\nNOTE x\n\ncue-1\n00:01.000 --> 00:02.500 align:start\nHi there\nline 2\n"
    assert subtitles.parse(srt) == ("srt", [subtitles.Cue(1000, 2500, ("Hi there", "line 2"))])
    assert subtitles.parse(vtt)[1] == subtitles.parse(srt)[1]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "no cues"),
        (b"\xff\xfe\x00", "UTF-8"),
        (b"1\n00:00:02,000 --> 00:00:01,000\nx\n", "end after it starts"),
        (b"1\n00:00:61,000 --> 00:01:02,000\nx\n", "below 60"),
        (b"1\nsoon --> later\nx\n", "timing line"),
        (b"WEBVTTX\n\n00:00.000 --> 00:01.000\nx\n", "must start"),
        (b"1\n00:00:00,000 --> 00:00:01,000\n<i></i>\n", "no cues with text"),
        (b"x" * (subtitles.MAX_BYTES + 1), "at most"),
    ],
)
def test_bad_files_are_refused_saying_why(data: bytes, words: str) -> None:
    with pytest.raises(subtitles.SubtitleError, match=words):
        subtitles.parse(data)


def test_cue_text_loses_markup_controls_and_ass_overrides() -> None:
    _, cues = subtitles.parse(
        "1\n00:00:00,000 --> 00:00:01,000\n{\\an8}<font color=red>a\\Nb</font>\x1b\u202e\n".encode()
    )
    (line,) = cues[0].lines
    assert line == "(/an8)a/Nb" and "{" not in line and "\\" not in line
    ass = subtitles.to_ass(cues, {"size": 6, "color": "white", "outline": 2,
                                  "position": "bottom", "margin": 5, "bold": False,
                                  "background": False})  # fmt: skip
    assert ass.count("Dialogue:") == 1 and "(/an8)a/Nb" in ass


def test_shifting_to_a_trim_window() -> None:
    cues = [subtitles.Cue(0, 1000, ("a",)), subtitles.Cue(1500, 3000, ("b",))]
    assert subtitles.shifted(cues, 1000, 2000) == [subtitles.Cue(500, 1000, ("b",))]
    assert "00:00:00.500 --> 00:00:01.000" in subtitles.to_webvtt(
        subtitles.shifted(cues, 1000, 2000)
    )


def edit(op: dict[str, Any], **output: Any) -> dict[str, Any]:
    return {"source": {"digest": D1}, "operations": [op], "output": output}


SUB = {"op": "subtitles", "source": {"digest": D2}}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (edit(SUB, container="gif"), "operations[0]"),
        (edit(SUB, container="mp3"), "operations[0]"),
        (edit({**SUB, "source": {"path": "subs.srt"}}), "operations[0].source"),
        (edit({**SUB, "mode": "soft", "style": {"size": 5}}), "operations[0]"),
        (edit({**SUB, "style": {"size": 50}}), "operations[0].style.size"),
        (edit({**SUB, "style": {"color": "red"}}), "operations[0].style.color"),
        (edit({**SUB, "mode": "soft", "language": "en'; x"}), "operations[0].language"),
    ],
)
def test_subtitle_operations_are_checked_at_submission(body: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as info:
        EditRequest.model_validate(body)
    assert describe(list(info.value.errors()))[0]["path"] == path


def test_burned_subtitles_always_carry_their_style_in_the_key() -> None:
    short = canonical_edit(EditRequest.model_validate(edit(SUB)), [D1, D2])
    spelled = canonical_edit(
        EditRequest.model_validate(edit({**SUB, "style": {"size": 6, "color": "white"}})), [D1, D2]
    )
    assert short == spelled
    assert short["operations"][0]["source"] == {"digest": D2}
    assert short["operations"][0]["style"]["position"] == "bottom"
