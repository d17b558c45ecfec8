"""Which ffmpeg binary to run, and which encoders it has.

Order: `VIDJOBS_FFMPEG`, else `ffmpeg` on PATH, else the binary the imageio-ffmpeg
package ships (so a plain `pip install` can run the demo). Probing never needs ffprobe.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache

from jobs.errors import PermanentError
from jobs.outputs import LOSSLESS_AUDIO, AudioCodec, Output
from workers.ffmpeg.controls import controls

ENV_VAR = "VIDJOBS_FFMPEG"
INSTALL_HINT = (
    "install ffmpeg (Debian/Ubuntu: `apt-get install -y ffmpeg`, macOS: `brew install ffmpeg`), "
    "or `pip install imageio-ffmpeg`, or point VIDJOBS_FFMPEG at an ffmpeg binary"
)

# Output codec name (jobs.outputs) -> ffmpeg encoders that produce it, preferred first.
VIDEO_ENCODERS: dict[str, tuple[str, ...]] = {
    "h264": ("libx264",),
    "hevc": ("libx265",),
    "vp9": ("libvpx-vp9",),
    # SVT-AV1 is by far the fastest of the three at comparable quality.
    "av1": ("libsvtav1", "libaom-av1", "librav1e"),
}
AUDIO_ENCODERS: dict[str, tuple[str, ...]] = {
    "aac": ("aac",),
    "opus": ("libopus",),  # ffmpeg's native "opus" encoder is experimental
    "mp3": ("libmp3lame",),
    "flac": ("flac",),
    "pcm_s16le": ("pcm_s16le",),
    "pcm_s24le": ("pcm_s24le",),
}
IMAGE_ENCODERS: dict[str, tuple[str, ...]] = {
    "gif": ("gif",),
    "jpg": ("mjpeg",),
    "png": ("png",),
}

_ENCODER_LINE = re.compile(r"^ ([VAS][A-Z.]{5}) ([A-Za-z0-9_.\-]+)\s")


class FfmpegNotFound(RuntimeError):
    """No usable ffmpeg binary: a deployment problem, not a problem with any job."""


def find_ffmpeg() -> str:
    """The ffmpeg binary to run, as an absolute path. Raises `FfmpegNotFound` with a hint."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return os.path.abspath(configured)
        raise FfmpegNotFound(f"{ENV_VAR}={configured!r} is not an executable file; {INSTALL_HINT}")
    found = shutil.which("ffmpeg")
    if found:
        return os.path.abspath(found)
    try:
        import imageio_ffmpeg

        exe = str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # the package is optional at runtime
        raise FfmpegNotFound(f"no ffmpeg binary found; {INSTALL_HINT}") from exc
    if exe and os.path.isfile(exe):
        return os.path.abspath(exe)
    raise FfmpegNotFound(f"no ffmpeg binary found; {INSTALL_HINT}")


@lru_cache(maxsize=8)
def encoders(ffmpeg: str) -> frozenset[str]:
    """Names of the encoders the binary was built with (`ffmpeg -encoders`), cached."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-encoders"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    names = set()
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        m = _ENCODER_LINE.match(line)
        if m:
            names.add(m.group(2))
    if not names:
        raise FfmpegNotFound(f"{ffmpeg} -encoders listed no encoders (exit {proc.returncode})")
    return frozenset(names)


_FILTER_LINE = re.compile(r"^ [T.][S.][C.] ([a-z0-9_]+) +[AVN|]+->[AVN|]+ ")


@lru_cache(maxsize=8)
def filters(ffmpeg: str) -> frozenset[str]:
    """Names of the filters the binary was built with (`ffmpeg -filters`), cached."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-filters"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    text = proc.stdout.decode("utf-8", "replace")
    return frozenset(m.group(1) for line in text.splitlines() if (m := _FILTER_LINE.match(line)))


def pick_encoder(ffmpeg: str, table: dict[str, tuple[str, ...]], codec: str) -> str | None:
    """The first encoder for `codec` the binary has, or None."""
    have = encoders(ffmpeg)
    return next((name for name in table.get(codec, ()) if name in have), None)


def available(ffmpeg: str, table: dict[str, tuple[str, ...]]) -> list[str]:
    """The codecs of `table` this binary can encode."""
    return [codec for codec in table if pick_encoder(ffmpeg, table, codec) is not None]


def encoder_args(
    output: Output,
    have: frozenset[str],
    with_audio: bool,
    *,
    pix_fmt: str = "yuv420p",
    two_pass: tuple[int, str] | None = None,
) -> list[str]:
    """Codec options for an output: encoder chosen from what the binary has, then quality
    and the encoder controls. `two_pass` is (pass number, stats file prefix)."""
    container = output.container
    if container.value in IMAGE_ENCODERS:
        enc = IMAGE_ENCODERS[container.value][0]
        if enc not in have:
            raise _missing(f"{container.value} images")
        if container.value == "gif":
            return ["-c:v", enc, "-an"]
        quality = ["-q:v", "2"] if container.value == "jpg" else []
        return ["-frames:v", "1", "-c:v", enc, *quality, "-an"]
    codec = output.video_codec.value if output.video_codec else ""
    if codec == "none":
        return [*audio_args(output, have), "-vn"]
    venc = next((e for e in VIDEO_ENCODERS.get(codec, ()) if e in have), None)
    if venc is None:
        raise _missing(f"{codec or 'no'} video")
    args = ["-c:v", venc, "-pix_fmt", pix_fmt]
    if output.video_bitrate_kbps is not None:
        args += ["-b:v", f"{int(output.video_bitrate_kbps)}k"]
    elif output.crf is not None:
        crf = int(output.crf)
        if venc == "librav1e":
            args += ["-qp", str(min(255, crf * 4))]
        else:
            args += ["-crf", str(crf)]
            if venc in ("libvpx-vp9", "libaom-av1"):
                args += ["-b:v", "0"]  # constant quality, not a bitrate cap
    args += controls(output, venc, two_pass)
    if codec == "hevc" and container.value in ("mp4", "mov"):
        args += ["-tag:v", "hvc1"]  # what Apple players look for
    if not with_audio or (output.audio_codec or AudioCodec.NONE) is AudioCodec.NONE:
        return [*args, "-an"]
    return [*args, *audio_args(output, have)]


def audio_args(output: Output, have: frozenset[str]) -> list[str]:
    audio = output.audio_codec or AudioCodec.NONE
    aenc = next((e for e in AUDIO_ENCODERS.get(audio.value, ()) if e in have), None)
    if aenc is None:
        raise _missing(f"{audio.value} audio")
    args = ["-c:a", aenc]
    if audio not in LOSSLESS_AUDIO:
        args += ["-b:a", f"{int(output.audio_bitrate_kbps or 128)}k"]
    return args


def _missing(what: str) -> PermanentError:
    return PermanentError(
        f"this worker's ffmpeg has no encoder for {what}", code="unsupported_codec"
    )
