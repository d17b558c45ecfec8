"""The vidjobs Python client: ``from vidjobs import Client, AsyncClient``.

Imports nothing of the server (no FastAPI, SQLAlchemy, database drivers or Kafka).

    with Client("http://127.0.0.1:8000", token) as vj:
        job = vj.submit({"source": {"digest": src.digest}, "operations": [...]})
        vj.download(vj.wait(job.key).key, "out.mp4")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vidjobs")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"

from vidjobs import errors
from vidjobs._http import RetryPolicy
from vidjobs.client import AsyncClient, Client
from vidjobs.models import (
    BatchItem,
    Event,
    Job,
    JobError,
    Page,
    Playback,
    Progress,
    Source,
    Task,
    Webhook,
)

__all__ = [
    "AsyncClient", "BatchItem", "Client", "Event", "Job", "JobError", "Page", "Playback",
    "Progress", "RetryPolicy", "Source", "Task", "Webhook", "__version__", "errors",
]
