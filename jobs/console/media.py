"""The job page's tasks graph and package player: what the templates and the live feed show."""

from __future__ import annotations

from typing import Any

from jobs.api.playback import playback_urls
from jobs.api.views import job_view
from jobs.errors import VidjobsError
from jobs.models import Job
from jobs.settings import Settings
from jobs.tasks.graph import Member
from jobs.tasks.views import task_view
from jobs.tenants import TenantRef

# What the live feed repeats of a task (its output stays on the page's first render).
LIVE_FIELDS = ("name", "status", "progress", "attempts", "max_attempts", "error",
               "cancel_requested")


def tasks_of(members: list[Member]) -> list[dict[str, Any]]:
    """A job's tasks in plan order (dependencies first), as the API's /tasks shows them,
    each with the names of the tasks that wait for it."""
    views = [task_view(m) for m in members]
    for v in views:
        v["needed_by"] = [w["name"] for w in views if v["name"] in w["depends_on"]]
    return views


def live_tasks(job: Job, members: list[Member]) -> dict[str, Any]:
    """The job page's poll: the job's status and progress and each task's."""
    view = job_view(job, members)  # a waiting job is "running", its progress its tasks'
    return {
        "status": view["status"],
        "progress": view["progress"],
        "tasks": [{k: v for k, v in task_view(m).items() if k in LIVE_FIELDS} for m in members],
    }


def playback_of(
    settings: Settings, tenant: TenantRef, job: Job, origin: str
) -> dict[str, Any] | None:
    """A succeeded package job's signed playback URLs (GET /v1/jobs/{key}/playback), and
    which player the page starts: "hls" (hls.js, or the browser's own HLS; an HLS or CMAF
    package) or "dash" (dash.js; a DASH-only package). None for a job without a package."""
    output = job.output if job.status == "succeeded" else None
    if not isinstance((output or {}).get("package"), dict):
        return None
    try:
        urls = playback_urls(settings, tenant, job, origin)
    except VidjobsError:  # expired or half-described: the page says there is no output
        return None
    return {**urls, "kind": "hls" if "hls" in urls["manifests"] else "dash"}
