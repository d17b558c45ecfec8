"""The job page's derived views: attempts (from the event timeline) and the output preview."""

from __future__ import annotations

from typing import Any

# Event types that end an attempt, and what the page calls the ending.
_ENDS = {
    "job.succeeded": "succeeded",
    "job.failed": "failed",
    "job.retry_scheduled": "failed, retry scheduled",
    "job.requeued": "requeued (lease expired or released)",
    "job.cancelled": "cancelled",
}
VIDEO = {"video/mp4", "video/webm"}


def attempts_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per attempt: when it was claimed, by which fencing token, how it ended and
    with what error (the events carry the error of a failed attempt)."""
    attempts: list[dict[str, Any]] = []
    for event in events:
        data = event["data"]
        if event["type"] == "job.claimed":
            attempts.append({
                "number": data.get("attempts"), "started": event["created_at"],
                "token": data.get("fencing_token"), "ended": None, "outcome": "running",
                "error": None,
            })
        elif event["type"] in _ENDS and attempts and attempts[-1]["ended"] is None:
            attempts[-1].update(
                ended=event["created_at"], outcome=_ENDS[event["type"]], error=data.get("error")
            )
    return attempts


def preview_of(job: dict[str, Any], base: str) -> dict[str, Any] | None:
    """How the page shows a succeeded job's file: an image, a video, or a download only."""
    output = job.get("output") or {}
    if job["status"] != "succeeded" or "digest" not in output or output.get("expired"):
        return None
    media = str(output.get("media_type") or "application/octet-stream")
    kind = "image" if media.startswith("image/") else "video" if media in VIDEO else "file"
    return {"kind": kind, "media_type": media, "url": f"{base}/output",
            "size": output.get("size")}
