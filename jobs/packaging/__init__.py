"""Packages (HLS/DASH/CMAF ladders) and thumbnail sprites: the request fields and the pure
planners that turn them into tasks (`jobs.taskplan.TaskPlan`)."""

from jobs.packaging.models import (
    Package,
    PackageFormat,
    Rung,
    Thumbnails,
    canonical_package,
    canonical_thumbnails,
)
from jobs.packaging.plan import plan_package, plan_thumbnails

__all__ = [
    "Package",
    "PackageFormat",
    "Rung",
    "Thumbnails",
    "canonical_package",
    "canonical_thumbnails",
    "plan_package",
    "plan_thumbnails",
]
