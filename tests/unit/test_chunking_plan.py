"""The `chunking` setting: its place in the key, which edits can be chunked, the plan."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs.canonical import canonical_edit
from jobs.chunking import audio_edit, blockers, decide, plan_chunks, slots, video_edit
from jobs.keys import job_key
from jobs.spec import EditRequest
from jobs.tasks.plan import task_key

DIGEST = "sha256:" + "ab" * 32


def edit(**extra: Any) -> EditRequest:
    body = {"source": {"digest": DIGEST}, "operations": [{"op": "scale", "width": 640}], **extra}
    return EditRequest.model_validate(body)


def key(req: EditRequest) -> str:
    return job_key("tenant-1", canonical_edit(req, [DIGEST]))


def test_the_default_leaves_keys_as_they_were_and_a_choice_changes_them() -> None:
    plain = edit()
    assert "chunking" not in canonical_edit(plain, [DIGEST])
    assert key(edit(chunking={"mode": "auto", "chunk_seconds": 10})) == key(plain)
    assert key(edit(chunking={"mode": "off"})) != key(plain)
    assert key(edit(chunking={"chunk_seconds": 6})) != key(plain)
    assert canonical_edit(edit(chunking={"mode": "on"}), [DIGEST])["chunking"] == {
        "mode": "on", "chunk_seconds": 10.0,
    }  # fmt: skip


def test_on_refuses_what_cannot_be_chunked_naming_the_operation() -> None:
    with pytest.raises(ValidationError) as info:
        EditRequest.model_validate({
            "source": {"digest": DIGEST}, "chunking": {"mode": "on"},
            "operations": [{"op": "scale", "width": 640}, {"op": "speed", "factor": 2}],
        })  # fmt: skip
    err = info.value.errors()[0]
    assert "speed" in err["msg"] and err["ctx"]["error"].path == "operations[1]"
    with pytest.raises(ValidationError, match="chunk_seconds"):
        edit(chunking={"chunk_seconds": 0.5})
    with pytest.raises(ValidationError, match="mode"):
        edit(chunking={"mode": "always"})


def test_auto_falls_back_and_says_why() -> None:
    long = 600_000
    assert decide(edit(), long, 120) == (True, "chunked into 60 chunks of about 10 s")
    assert decide(edit(), 60_000, 120)[0] is False
    assert "not longer than 120 s" in decide(edit(), 60_000, 120)[1]
    gif = edit(output={"container": "gif"})
    chunked, why = decide(gif, long, 120)
    assert not chunked and "output.container" in why
    assert decide(edit(chunking={"mode": "off"}), long, 120) == (False, "chunking is off")
    assert decide(edit(chunking={"mode": "on"}), 30_000, 120)[0] is True  # on: even short ones
    fade = EditRequest.model_validate({
        "source": {"digest": DIGEST}, "operations": [{"op": "fade", "fade_in": 1}],
    })  # fmt: skip
    assert [p for p, _ in blockers(fade)] == ["operations[0]"]


def test_the_plan_is_chunks_audio_and_a_stitch_that_waits_for_all() -> None:
    inputs = [{"digest": DIGEST, "path": None}]
    spec = canonical_edit(edit(), [DIGEST])
    plans = plan_chunks(spec, inputs, 25_000, 10.0, has_audio=True)
    # The audio first: claimed first, it runs beside the chunks instead of after them.
    assert [p.name for p in plans] == ["audio", "chunk-0000", "chunk-0001", "chunk-0002", "stitch"]
    stitch = plans[-1]
    assert stitch.depends_on == ("chunk-0000", "chunk-0001", "chunk-0002", "audio")
    assert stitch.publish_as == "output" and stitch.spec["slots"] == 3
    chunk_specs = [p.spec for p in plans[1:4]]
    assert [s["slot"] for s in chunk_specs] == [0, 1, 2]
    assert all(s["edit"] == video_edit(spec) and s["inputs"] == inputs for s in chunk_specs)
    assert stitch.spec["edit"] == spec and plans[0].spec["edit"] == audio_edit(spec)
    silent = plan_chunks(spec, inputs, 25_000, 10.0, has_audio=False)
    assert "audio" not in [p.name for p in silent] and silent[-1].spec["audio"] is False
    assert slots(1, 10.0) == 1 and slots(10_001, 10.0) == 2 and slots(10**9, 2.0) == 1000


def test_chunks_leave_out_the_audio_and_the_audio_task_the_video() -> None:
    def tasks(**extra: Any) -> dict[str, Any]:
        req = edit(**extra)
        spec = canonical_edit(req, [DIGEST])
        plans = plan_chunks(spec, [{"digest": DIGEST}], 25_000, 10.0, has_audio=True)
        out: dict[str, str] = {}
        for p in plans:
            out[p.name] = task_key("t", p, {d: out[d] for d in p.depends_on})
        return out

    loud = {"operations": [{"op": "scale", "width": 640}, {"op": "volume", "db": -3}]}
    one = tasks(**loud, output={"crf": 20})
    quieter = tasks(
        operations=[{"op": "scale", "width": 640}, {"op": "volume", "db": -9}],
        output={"crf": 20, "audio_bitrate_kbps": 96}, chunking={"mode": "on"},
    )  # fmt: skip
    assert {n for n in one if one[n] == quieter[n]} == {"chunk-0000", "chunk-0001", "chunk-0002"}
    sharper = tasks(**loud, output={"crf": 18})
    assert {n for n in one if one[n] == sharper[n]} == {"audio"}
    video = video_edit(canonical_edit(edit(**loud), [DIGEST]))
    assert [op["op"] for op in video["operations"]] == ["scale"]
    assert video["output"]["audio_codec"] == "none" and "audio_bitrate_kbps" not in video["output"]
    EditRequest.model_validate(video)  # still an edit the chunk executor can parse
