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
    assert chunks.chunked and chunks.reason == "chunked into 30 chunks of about 10 s"
    assert is_graph(req, chunks) and not is_graph(req)
    plans = plan(req, INPUTS, PROBE, chunks)
    assert [p.kind for p in plans] == ["chunk"] * 30 + ["audio", "stitch"]
    assert plans[-1].publish_as == "output" and len(plans[-1].depends_on) == 31


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
