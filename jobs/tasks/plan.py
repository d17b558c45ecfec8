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

from jobs.keys import canonical_json
from jobs.spec import EditRequest, canonical_edit, output_request
from jobs.taskplan import TaskPlan

TASK_KEY_VERSION = "vt1"


def is_graph(req: EditRequest) -> bool:
    """Does this request become a job of several task rows (not a simple job)?"""
    return req.outputs is not None


def plan(
    req: EditRequest, inputs: Sequence[Mapping[str, Any]], source_probe: Any = None
) -> list[TaskPlan]:
    """The request's tasks, each after the tasks it depends on. `inputs`: the resolved
    sources (`{"digest", "path"}` each, main source first), as the job's spec stores them.
    `source_probe` is for planners that size work by the source (packages, sprites)."""
    del source_probe  # used by the package and thumbnail planners once they exist
    digests = [str(i["digest"]) for i in inputs]
    if req.outputs is None:
        return [TaskPlan("main", "edit", {**canonical_edit(req, digests), "inputs": list(inputs)})]
    plans: list[TaskPlan] = []
    for out in req.outputs:
        edit = canonical_edit(output_request(req, out), digests)
        spec = {**edit, "inputs": list(inputs)}
        plans.append(TaskPlan(out.name, "edit", spec, publish_as=f"outputs.{out.name}"))
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
