"""The submission's chunking decision (jobs.tasks.chunkplan): which edits read the probe at
all, what the planner makes of the decision, and what the job's view says."""

from __future__ import annotations

from typing import Any

from jobs.api.views import job_view
from jobs.models import Job
from jobs.spec import EditRequest
from jobs.tasks import is_graph, plan
from jobs.tasks.chunkplan import candidate, decide

DIGEST = "sha256:" + "a" * 64
PROBE = {"duration_ms": 300_000, "has_audio": True}
INPUTS = [{"digest": DIGEST, "path": "/x.mp4"}]


def edit(**extra: Any) -> EditRequest:
    return EditRequest.model_validate({"source": {"digest": DIGEST}, **extra})


def test_only_chunkable_single_output_edits_need_the_probe() -> None:
    assert candidate(edit())
    assert not candidate(edit(chunking={"mode": "off"}))
    assert not candidate(edit(operations=[{"op": "speed", "factor": 2}]))
    assert not candidate(edit(outputs=[{"name": "a"}, {"name": "b"}]))


def test_a_long_source_becomes_chunks_audio_and_stitch() -> None:
    req = edit()
    chunks = decide(req, PROBE, 120)
    # 300 s: 28 chunks of 10 s, then the last 20 s in chunks of 5 s.
    reason = "chunked into 32 chunks of about 10 s, the last 4 of about 5 s"
    assert chunks.chunked and chunks.reason == reason
    assert is_graph(req, chunks) and not is_graph(req)
    plans = plan(req, INPUTS, PROBE, chunks)
    assert [p.kind for p in plans] == ["audio"] + ["chunk"] * 32 + ["stitch"]
    assert plans[-1].publish_as == "output" and len(plans[-1].depends_on) == 33
    starts = plans[-1].spec["starts_ms"]
    assert starts[:2] == [0, 10_000]
    assert starts[-5:] == [270_000, 280_000, 285_000, 290_000, 295_000]


def test_muted_or_silent_edits_have_no_audio_task() -> None:
    for req, probe in ((edit(operations=[{"op": "mute"}]), PROBE),
                       (edit(), {**PROBE, "has_audio": False})):
        plans = plan(req, INPUTS, probe, decide(req, probe, 120))
        assert "audio" not in [p.kind for p in plans]


def test_short_or_unknown_sources_run_once_and_say_why() -> None:
    req = edit()
    short = decide(req, {"duration_ms": 60_000}, 120)
    assert not short.chunked and "not longer than 120 s" in short.reason
    assert not decide(req, None, 120).chunked
    assert [p.kind for p in plan(req, INPUTS, None, short)] == ["edit"]


def test_the_view_shows_the_decision_but_not_in_the_spec() -> None:
    spec = {"source": {"digest": DIGEST}, "inputs": INPUTS, "chunked": {"chunked": False, "reason": "chunking is off"}}
    view = job_view(Job(tenant_id="t", key="k", spec=spec))
    assert view["chunking"] == {"chunked": False, "reason": "chunking is off"}
    assert "chunked" not in view["spec"] and "inputs" not in view["spec"]


PROBE_1080 = {**PROBE, "height": 1080, "width": 1920}
LADDER = [{"height": 720, "video_bitrate_kbps": 3000}, {"height": 360, "video_bitrate_kbps": 800}]


def package(fmt: str = "hls", **chunking: Any) -> EditRequest:
    pkg = {"format": fmt, "segment_seconds": 6, "ladder": LADDER}
    return edit(package=pkg, chunking={"mode": "auto", "chunk_seconds": 10, **chunking})


def test_a_chunked_package_is_chunks_per_rung_one_audio_a_stitch_per_rung_then_the_package(
) -> None:
    req = package()
    assert candidate(req)
    chunks = decide(req, PROBE_1080, 120)
    # 10 s is not a whole number of 6 s segments: a chunk is 2 segments (12 s), 25 per rung.
    assert chunks.reason == "chunked into 25 chunks of 12 s (2 segments of 6 s) per rung"
    plans = plan(req, INPUTS, PROBE_1080, chunks)
    by_name = {p.name: p for p in plans}
    assert [p.kind for p in plans] == (
        ["rung-audio"] + ["rung-chunk"] * 25 + ["rung-stitch"] + ["rung-chunk"] * 25
        + ["rung-stitch", "package"]
    )  # fmt: skip
    assert by_name["rung-720-chunk-0024"].spec["last"] is True
    assert by_name["rung-720-chunk-0003"].spec | {"deps": {}} == {
        "kind": "rung-chunk", "source": {"digest": DIGEST}, "inputs": INPUTS, "height": 720,
        "video_codec": "h264", "video_bitrate_kbps": 3000, "segment_seconds": 6,
        "chunk_segments": 2, "slot": 3, "last": False, "deps": {},
    }  # fmt: skip
    stitch = by_name["rung-360"]
    assert stitch.depends_on == (*(f"rung-360-chunk-{i:04d}" for i in range(25)), "audio")
    assert stitch.spec["slots"] == 25 and stitch.spec["inputs"] == []
    assert by_name["package"].depends_on == ("rung-720", "rung-360")
    assert by_name["package"].publish_as == "package"


def keys(req: EditRequest) -> dict[str, str]:
    from jobs.tasks.plan import task_key

    out: dict[str, str] = {}
    for p in plan(req, INPUTS, PROBE_1080, decide(req, PROBE_1080, 120)):
        out[p.name] = task_key("tenant-1", p, {d: out[d] for d in p.depends_on})
    return out


def test_equal_chunks_of_two_packages_have_one_key_and_other_chunks_do_not() -> None:
    hls, dash = keys(package("hls")), keys(package("dash"))
    assert hls.keys() == dash.keys()
    assert {n for n in hls if hls[n] != dash[n]} == {"package"}  # chunks, audio, stitches shared
    assert keys(package("hls")) == hls  # deterministic
    longer = keys(package("hls", chunk_seconds=18))  # 3 segments: other chunks
    assert not set(longer.values()) & {v for n, v in hls.items() if "chunk" in n}
    assert longer["audio"] == hls["audio"]  # the audio does not depend on the chunks


def test_outputs_beside_a_package_are_refused_by_on_and_explained_by_auto() -> None:
    import pytest
    from pydantic import ValidationError

    both = {"outputs": [{"name": "mp4"}], "package": {"ladder": LADDER}}
    with pytest.raises(ValidationError) as info:
        edit(**both, chunking={"mode": "on"})
    assert info.value.errors()[0]["ctx"]["error"].path == "outputs"
    auto = edit(**both)
    assert candidate(auto)
    chunks = decide(auto, PROBE_1080, 120)
    assert not chunks.chunked and "(outputs)" in chunks.reason and "named outputs" in chunks.reason
    assert [p.kind for p in plan(auto, INPUTS, PROBE_1080, chunks)] == [
        "edit", "rendition", "rendition", "package",
    ]  # fmt: skip
    assert not candidate(package(mode="off"))
    short = decide(package(), {**PROBE_1080, "duration_ms": 60_000}, 120)
    assert not short.chunked and "not longer than 120 s" in short.reason
