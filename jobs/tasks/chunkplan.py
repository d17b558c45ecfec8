"""Whether a submitted edit runs chunked, decided once before its row is inserted.

`candidate` is pure and cheap: only a package, or a single-output edit that nothing blocks
(`jobs.chunking.blockers`), whose `chunking` is not `off`, needs the source's stored probe
at all, so every other edit is decided without a read. The decision (and its sentence) is
kept in the row's spec under `chunked`, so the job's view can say whether and why it was
(not) chunked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs import chunking
from jobs.chunking import Chunking

DECISION_KEY = "chunked"  # in a job row's spec: {"chunked": bool, "reason": str}


@dataclass(frozen=True)
class Decision:
    chunked: bool
    reason: str
    duration_ms: int | None = None
    has_audio: bool = False

    def as_spec(self) -> dict[str, Any]:
        return {"chunked": self.chunked, "reason": self.reason}


def single_output(req: Any) -> bool:
    return req.outputs is None and req.package is None and req.thumbnails is None


def candidate(req: Any) -> bool:
    """Could this edit be chunked, given a long enough source? (No I/O.) A package always
    gets a decision (its view says why it was not chunked): it reads the probe anyway."""
    if (req.chunking or Chunking()).mode == "off":
        return False
    return req.package is not None or (single_output(req) and not chunking.blockers(req))


def decide(req: Any, probe: dict[str, Any] | None, min_seconds: float) -> Decision:
    """The decision from the main source's stored probe (None: a path or S3 source)."""
    duration = probe.get("duration_ms") if probe else None
    duration_ms = duration if isinstance(duration, int) and duration > 0 else None
    chunked, reason = chunking.decide(req, duration_ms, min_seconds)
    return Decision(chunked, reason, duration_ms, _wants_audio(req, probe))


def _wants_audio(req: Any, probe: dict[str, Any] | None) -> bool:
    if not probe or not probe.get("has_audio"):
        return False
    if req.package is not None:  # every rung carries the source's audio
        return True
    if req.output.audio_codec == "none":
        return False
    return not any(op.op == "mute" for op in req.operations)
