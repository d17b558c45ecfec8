"""The `chunking` setting: its place in the key, which edits can be chunked, the plan."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs.canonical import canonical_edit
from jobs.chunking import audio_edit, blockers, decide, plan_chunks, slots, starts_ms, video_edit
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
    reason = "chunked into 62 chunks of about 10 s, the last 4 of about 5 s"
    assert decide(edit(), long, 120) == (True, reason)
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
    plans = plan_chunks(spec, inputs, 35_000, 10.0, has_audio=True)
    names = ["chunk-0000", "chunk-0001", "chunk-0002", "chunk-0003", "chunk-0004"]
    # The audio first: claimed first, it runs beside the chunks instead of after them.
    assert [p.name for p in plans] == ["audio", *names, "stitch"]
    stitch = plans[-1]
    assert stitch.depends_on == (*names, "audio")
    assert stitch.publish_as == "output" and stitch.spec["slots"] == 5
    chunk_specs = [p.spec for p in plans[1:6]]
    assert [s["slot"] for s in chunk_specs] == [0, 1, 2, 3, 4]
    # 10 s chunks, the last two lengths' worth (15 s left) in halves, the last one short.
    assert all(s["starts_ms"] == [0, 10_000, 20_000, 25_000, 30_000] for s in chunk_specs)
    assert all(s["edit"] == video_edit(spec) and s["inputs"] == inputs for s in chunk_specs)
    assert stitch.spec["edit"] == spec and plans[0].spec["edit"] == audio_edit(spec)
    assert stitch.spec["inputs"] == []  # it reads its deps: nothing for the worker to fetch
    silent = plan_chunks(spec, inputs, 25_000, 10.0, has_audio=False)
    assert "audio" not in [p.name for p in silent] and silent[-1].spec["audio"] is False
    assert slots(1, 10.0) == 1 and slots(10_001, 10.0) == 2 and slots(10**9, 2.0) == 1000


def test_start_times_shorten_at_the_end_and_stay_within_bounds() -> None:
    assert starts_ms(60_000, 6.0) == [*range(0, 48_000, 6000), 48_000, 51_000, 54_000, 57_000]
    assert starts_ms(1, 10.0) == [0] and starts_ms(5000, 10.0) == [0]
    assert starts_ms(15_000, 10.0) == [0, 5000, 10_000]  # all of it is the tail
    assert starts_ms(12_000, 2.0) == list(range(0, 12_000, 2000))  # never under 2 s
    assert starts_ms(20_000, 3.0) == [0, 3000, 6000, 9000, 12_000, 15_000, 17_000, 19_000]
    huge = starts_ms(10**9, 2.0)
    assert len(huge) == 1000 and huge[-1] == 999 * 2000  # the last slot takes the rest


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
    shared = {"chunk-0000", "chunk-0001", "chunk-0002", "chunk-0003"}
    assert {n for n in one if one[n] == quieter[n]} == shared
    sharper = tasks(**loud, output={"crf": 18})
    assert {n for n in one if one[n] == sharper[n]} == {"audio"}
    video = video_edit(canonical_edit(edit(**loud), [DIGEST]))
    assert [op["op"] for op in video["operations"]] == ["scale"]
    assert video["output"]["audio_codec"] == "none" and "audio_bitrate_kbps" not in video["output"]
    EditRequest.model_validate(video)  # still an edit the chunk executor can parse
