"""Pure planners: a request's `package` and `thumbnails` as `TaskPlan`s (no I/O).

`plan_package`: one `kind="rendition"` task per rung (tallest first, named `rung-<height>`),
then one `kind="package"` task that depends on all of them (`publish_as="package"`).
`plan_thumbnails`: one `kind="sprites"` task (`publish_as="thumbnails"`).
Task specs carry `"kind"` and `"inputs"` (the main source, as in a job spec), so the runner
resolves sources the same way as for an edit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobs.errors import InvalidRequest
from jobs.packaging.ladder import PlannedRung, auto_ladder, explicit_ladder
from jobs.taskplan import TaskPlan

if TYPE_CHECKING:
    from jobs.spec import EditRequest

VIDEO_CODEC = "h264"
AUDIO_CODEC = "aac"


def _problem(path: str, message: str, allowed: Any) -> InvalidRequest:
    return InvalidRequest(
        "the package cannot be made from this source",
        details=[{"path": path, "message": message, "allowed": allowed}],
    )


def _main_input(req: EditRequest, inputs: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """The resolved main source ({"digest", "path", ...}): the job spec's first input."""
    if inputs:
        return dict(inputs[0])
    if req.source.digest is not None:
        return {"digest": req.source.digest, "path": None}
    raise ValueError("a path or S3 source needs its resolved `inputs` (the job spec's)")


def _source_height(probe: Mapping[str, Any] | None) -> int | None:
    height = (probe or {}).get("height")
    return height if isinstance(height, int) and height > 0 else None


def rungs_for(req: EditRequest, source_probe: Mapping[str, Any] | None) -> list[PlannedRung]:
    """The ladder a request asks for, checked against the source's height when known."""
    pkg = req.package
    assert pkg is not None
    height = _source_height(source_probe)
    if pkg.ladder == "auto":
        if height is None:
            raise _problem(
                "package.ladder",
                '"auto" picks rungs by the source\'s height, and this source has no known '
                "video height",
                "a list of rungs",
            )
        return auto_ladder(pkg, height)
    rungs = explicit_ladder(pkg)
    if height is not None:
        for i, rung in enumerate(pkg.ladder):
            if rung.height > height:
                raise _problem(
                    f"package.ladder[{i}].height",
                    f"a rung of {rung.height} px is taller than the {height} px source "
                    "(renditions are never upscaled)",
                    {"le": height},
                )
    return rungs


def plan_package(
    req: EditRequest,
    source_probe: Mapping[str, Any] | None,
    *,
    inputs: Sequence[Mapping[str, Any]] | None = None,
) -> list[TaskPlan]:
    """The rendition tasks and the package task of `req.package`.

    `source_probe`: the main source's stored probe (`Probe.metadata()`: width, height, ...).
    `inputs`: the job spec's resolved inputs (main source first); needed for path and S3
    sources, optional for an uploaded digest.
    """
    pkg = req.package
    if pkg is None:
        return []
    source = _main_input(req, inputs)
    digest = {"digest": source["digest"]}
    plans: list[TaskPlan] = []
    names: list[str] = []
    for rung in rungs_for(req, source_probe):
        name = f"rung-{rung.height}"
        names.append(name)
        spec = {
            "kind": "rendition",
            "source": digest,
            "inputs": [source],
            "height": rung.height,
            "video_codec": VIDEO_CODEC,
            "video_bitrate_kbps": rung.video_bitrate_kbps,
            "audio_codec": AUDIO_CODEC,
            "audio_bitrate_kbps": pkg.audio_bitrate_kbps,
            "segment_seconds": pkg.segment_seconds,
        }
        plans.append(TaskPlan(name=name, kind="rendition", spec=spec))
    package_spec = {
        "kind": "package",
        "inputs": [],
        "format": pkg.format.value,
        "segment_seconds": pkg.segment_seconds,
        "renditions": names,
    }
    plans.append(
        TaskPlan(
            name="package",
            kind="package",
            spec=package_spec,
            depends_on=tuple(names),
            publish_as="package",
        )
    )
    return plans


def plan_thumbnails(
    req: EditRequest,
    source_probe: Mapping[str, Any] | None,
    *,
    inputs: Sequence[Mapping[str, Any]] | None = None,
) -> list[TaskPlan]:
    """The sprites task of `req.thumbnails`."""
    thumbs = req.thumbnails
    if thumbs is None:
        return []
    source = _main_input(req, inputs)
    if source_probe is not None and _source_height(source_probe) is None:
        raise InvalidRequest(
            "thumbnails need a video source",
            details=[
                {
                    "path": "thumbnails",
                    "message": "the source has no video stream",
                    "allowed": "a video source",
                }
            ],
        )
    spec = {
        "kind": "sprites",
        "source": {"digest": source["digest"]},
        "inputs": [source],
        **thumbs.model_dump(mode="json"),
    }
    return [TaskPlan(name="thumbnails", kind="sprites", spec=spec, publish_as="thumbnails")]
