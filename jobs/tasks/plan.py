"""The planner: an edit request becomes its tasks (`TaskPlan`s), before any row exists.

Pure: the request and its resolved inputs in, plans out. A simple edit is one plan, the job
row itself. Each of several named `outputs` is one "edit" task whose spec is the single-output
edit that makes it (so the edit executor runs it unchanged), published at `outputs.<name>`.
A task's key comes from the tenant, its kind, its own spec (with the content digests it
reads) and its dependencies' keys: equal work of one tenant has one key, and so one row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from jobs.canonical import canonical_edit
from jobs.chunking import Chunking, plan_chunks
from jobs.keys import canonical_json
from jobs.packaging import plan_package, plan_thumbnails
from jobs.spec import EditRequest, output_request
from jobs.taskplan import TaskPlan
from jobs.tasks.chunkplan import Decision

TASK_KEY_VERSION = "vt1"


def is_graph(req: EditRequest, chunks: Decision | None = None) -> bool:
    """Does this request become a job of several task rows (not a simple job)? A chunked
    edit does (`chunks`: the submission's `chunkplan.decide`, made once with the probe)."""
    several = req.outputs is not None or req.package is not None or req.thumbnails is not None
    return several or (chunks is not None and chunks.chunked)


def plan(
    req: EditRequest,
    inputs: Sequence[Mapping[str, Any]],
    source_probe: Any = None,
    chunks: Decision | None = None,
) -> list[TaskPlan]:
    """The request's tasks, each after the tasks it depends on. `inputs`: the resolved
    sources (`{"digest", "path"}` each, main source first), as the job's spec stores them.
    `source_probe` sizes a package's ladder and the sprites (the main source's stored probe).
    A chunked edit (`chunks`) is its chunk tasks, its audio task and the stitch.

    A request with a `package` or `thumbnails` makes those (and its `outputs`, if any), not
    the single `output`: "an mp4 plus a ladder" is `outputs` beside `package`."""
    digests = [str(i["digest"]) for i in inputs]
    if chunks is not None and chunks.chunked and chunks.duration_ms is not None:
        seconds = (req.chunking or Chunking()).chunk_seconds
        edit = canonical_edit(req, digests)
        return plan_chunks(
            edit, [dict(i) for i in inputs], chunks.duration_ms, seconds,
            has_audio=chunks.has_audio,
        )
    if not is_graph(req):
        return [TaskPlan("main", "edit", {**canonical_edit(req, digests), "inputs": list(inputs)})]
    plans: list[TaskPlan] = []
    for out in req.outputs or ():
        edit = canonical_edit(output_request(req, out), digests)
        spec = {**edit, "inputs": list(inputs)}
        plans.append(TaskPlan(out.name, "edit", spec, publish_as=f"outputs.{out.name}"))
    plans += plan_package(req, source_probe, inputs=inputs)
    plans += plan_thumbnails(req, source_probe, inputs=inputs)
    return plans


def task_key(tenant_id: str, task: TaskPlan, dep_keys: Mapping[str, str]) -> str:
    """`vt1_` + sha256 of the tenant, kind, spec (inputs by digest only) and dependencies."""
    spec = dict(task.spec)
    spec["inputs"] = [{"digest": i["digest"]} for i in spec.get("inputs", [])]
    material = canonical_json(
        {
            "v": TASK_KEY_VERSION,
            "tenant": tenant_id,
            "kind": task.kind,
            "spec": spec,
            "deps": dict(dep_keys),
        }
    )
    return f"{TASK_KEY_VERSION}_{hashlib.sha256(material).hexdigest()}"
