"""ffmpeg execution: the only package that runs ffmpeg or imports ffmpeg-related packages.

Public entry points:
- `FfmpegExecutor(limits)`: the runner's executor (`workers.executor.Executor`).
- `make_edit_check()`: a submission-time check that the output codecs can be encoded.
- `preflight(path, limits)`: probe an untrusted file and refuse it with a PermanentError
  unless it is a usable video (or, with `allow_image=True`, an image) within limits.
- `probe(path)`: container, duration and streams, without ffprobe.
- `probe_upload(path)`: blocking preflight for uploads; raises InvalidRequest (422).
- `packaging_executors(limits)`: the `rendition`, `package` and `sprites` task executors.
"""

from workers.ffmpeg.binary import FfmpegNotFound, find_ffmpeg
from workers.ffmpeg.executor import FfmpegExecutor, check_encoders, make_edit_check, media_type
from workers.ffmpeg.probe import Probe, Stream, check_probe, preflight, probe, probe_upload
from workers.ffmpeg.registry import packaging_executors
from workers.ffmpeg.run import Limits

__all__ = [
    "FfmpegExecutor",
    "FfmpegNotFound",
    "Limits",
    "Probe",
    "Stream",
    "check_encoders",
    "check_probe",
    "find_ffmpeg",
    "make_edit_check",
    "media_type",
    "packaging_executors",
    "preflight",
    "probe",
    "probe_upload",
]
