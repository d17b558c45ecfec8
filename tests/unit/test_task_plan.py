"""The planner and task keys: pure, deterministic, per tenant."""

from __future__ import annotations

from jobs.canonical import canonical_edit
from jobs.keys import job_key
from jobs.spec import EditRequest
from jobs.tasks import is_graph, plan, task_key
from workers.ledger import media_ms

DIGEST = "sha256:" + "ab" * 32
INPUTS = [{"digest": DIGEST, "path": "/srv/a.mp4"}]


def req(**extra: object) -> EditRequest:
    return EditRequest.model_validate(
        {"source": {"digest": DIGEST}, "operations": [{"op": "trim", "start": 1}], **extra}
    )


def test_a_simple_edit_is_one_task_and_keeps_its_key() -> None:
    simple = req()
    assert not is_graph(simple)
    [main] = plan(simple, INPUTS)
    assert (main.name, main.kind, main.depends_on, main.publish_as) == ("main", "edit", (), None)
    assert main.spec == {**canonical_edit(simple, [DIGEST]), "inputs": INPUTS}


def test_each_named_output_is_a_task_whose_spec_is_its_own_single_output_edit() -> None:
    several = req(outputs=[{"name": "hd", "height": 720}, {"name": "poster", "container": "png"}])
    hd, poster = plan(several, INPUTS)
    assert (hd.publish_as, poster.publish_as) == ("outputs.hd", "outputs.poster")
    assert hd.spec["operations"][-1] == {"op": "scale", "width": None, "height": 720}
    assert poster.spec["operations"][-1]["op"] == "thumbnail"
    assert poster.spec["output"]["container"] == "png"
    # The job key covers every output; it is not any simple edit's key.
    assert job_key("t", canonical_edit(several, [DIGEST])) != job_key(
        "t", canonical_edit(req(), [DIGEST])
    )


def test_task_keys_follow_tenant_work_and_bytes_but_not_names_or_paths() -> None:
    a = plan(req(outputs=[{"name": "a", "height": 240}]), INPUTS)[0]
    b = plan(req(outputs=[{"name": "b", "height": 240}]), [{"digest": DIGEST, "path": None}])[0]
    c = plan(req(outputs=[{"name": "a", "height": 360}]), INPUTS)[0]
    assert task_key("t1", a, {}) == task_key("t1", b, {})  # same work of one tenant
    assert task_key("t1", a, {}) != task_key("t2", a, {})  # never across tenants
    assert task_key("t1", a, {}) != task_key("t1", c, {})
    assert task_key("t1", a, {}) != task_key("t1", a, {"rung": "vt1_x"})
    assert task_key("t1", a, {}).startswith("vt1_")


def test_the_ledger_counts_every_output_of_a_job_of_several() -> None:
    output = {"outputs": {"a": {"duration_ms": 1500}, "b": {"duration_ms": 500}, "c": None}}
    assert media_ms(output) == 2000
    assert media_ms({"duration_ms": 7}) == 7


def test_an_output_keeps_its_own_encoding_settings() -> None:
    several = req(outputs=[{"name": "a", "keyframe_interval": 2, "gop_length": 50, "crf": 30}])
    [a] = plan(several, INPUTS)
    assert a.spec["output"]["keyframe_interval_ms"] == 2000
    assert (a.spec["output"]["gop_length"], a.spec["output"]["crf"]) == (50, 30)
