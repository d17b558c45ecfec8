"""The `package` task: segment the renditions it depends on into an HLS, DASH or CMAF
package (stream copy, no re-encode) and write its manifests.

Audio: plain HLS muxes the audio into every variant's MPEG-TS segments; DASH and CMAF carry
it once, as its own adaptation set (DASH) and as an `EXT-X-MEDIA` audio rendition group
that every variant names (the HLS side of CMAF).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from jobs.errors import PermanentError
from jobs.packaging.media import FILE_NAME
from jobs.packaging.models import PackageFormat
from jobs.packaging.specs import PackageSpec, parse_task_spec
from workers.executor import DepOutput, ExecutionContext, ExecutionResult
from workers.ffmpeg.abr import AUDIO_CODECS, DASH_MANIFEST, HLS_MASTER, package_command
from workers.ffmpeg.manifests import (
    MediaPlaylist,
    Variant,
    master_playlist,
    read_media_playlist,
)
from workers.ffmpeg.rendition import RENDITION_FILE, FfmpegTask


def _rendition(ctx: ExecutionContext, name: str) -> tuple[DepOutput, Path]:
    dep = ctx.deps.get(name)
    path = None if dep is None else dep.files.get(RENDITION_FILE)
    if dep is None or path is None:
        raise PermanentError(
            f"the package task has no {RENDITION_FILE} of its dependency {name!r}",
            code="invalid_spec",
        )
    return dep, path


class PackageExecutor(FfmpegTask):
    """Packages the renditions named in its spec (`kind="package"`). Its files are every
    segment, playlist and manifest, by name; its output says where the manifests are."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = parse_task_spec(PackageSpec, ctx.job.spec)
        rungs = [_rendition(ctx, name) for name in spec.renditions]
        meta = [dict(dep.output) for dep, _ in rungs]
        paths = [path for _, path in rungs]
        has_audio = all(bool(m.get("has_audio")) for m in meta)
        root = ctx.workdir / "package"
        root.mkdir()
        argv = package_command(
            self.ffmpeg, paths, has_audio, spec.format, root, spec.segment_seconds
        )
        ctx.report_progress(0.0)
        await self.run(ctx, argv, also_redact=paths)
        output = await asyncio.to_thread(self._manifests, root, spec, meta, has_audio)
        files: dict[str, Path] = {}
        for path in sorted(root.iterdir()):
            if not FILE_NAME.match(path.name) or not path.is_file():
                raise PermanentError(
                    "ffmpeg wrote an unexpected file into the package", code="invalid_output"
                )
            files[path.name] = path
        ctx.report_progress(1.0)
        return ExecutionResult(path=None, media_type=None, metadata=output, files=files)

    def _manifests(
        self, root: Path, spec: PackageSpec, meta: list[dict[str, Any]], has_audio: bool
    ) -> dict[str, Any]:
        """Check the playlists ffmpeg wrote, write the HLS master, describe the package."""
        fmt = spec.format
        manifests: dict[str, str] = {}
        renditions: list[dict[str, Any]] = []
        audio: dict[str, Any] | None = None
        if fmt is PackageFormat.DASH:
            if not (root / DASH_MANIFEST).is_file():
                raise PermanentError("ffmpeg wrote no DASH manifest", code="invalid_output")
            manifests["dash"] = DASH_MANIFEST
            renditions = [
                _describe(name, m, None) for name, m in zip(spec.renditions, meta, strict=True)
            ]
            if has_audio:
                audio = {"mode": "adaptation_set", "codecs": AUDIO_CODECS}
            return _output(spec, manifests, renditions, audio, meta)
        muxed = fmt is PackageFormat.HLS
        names = [f"stream_{i}.m3u8" if muxed else f"media_{i}.m3u8" for i in range(len(meta))]
        variants: list[Variant] = []
        for name, m in zip(names, meta, strict=True):
            playlist = read_media_playlist(root, name)
            codecs = str(m["video_codecs"])
            if muxed and has_audio:
                codecs = f"{codecs},{AUDIO_CODECS}"
            variants.append(
                Variant(playlist, int(m["width"]), int(m["height"]), float(m["fps"]), codecs)
            )
        group: MediaPlaylist | None = None
        if has_audio and not muxed:
            group = read_media_playlist(root, f"media_{len(meta)}.m3u8")
            audio = {"mode": "rendition_group", "codecs": AUDIO_CODECS, "playlist": group.name}
        elif has_audio:
            audio = {"mode": "muxed", "codecs": AUDIO_CODECS}
        (root / HLS_MASTER).write_text(master_playlist(root, variants, group), encoding="ascii")
        manifests["hls"] = HLS_MASTER
        if fmt is PackageFormat.CMAF:
            if not (root / DASH_MANIFEST).is_file():
                raise PermanentError("ffmpeg wrote no DASH manifest", code="invalid_output")
            manifests["dash"] = DASH_MANIFEST
        for task, v, m in zip(spec.renditions, variants, meta, strict=True):
            renditions.append(_describe(task, m, v, root))
        return _output(spec, manifests, renditions, audio, meta)


def _describe(
    task: str, m: dict[str, Any], v: Variant | None, root: Path | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "task": task,
        "width": m["width"],
        "height": m["height"],
        "fps": m["fps"],
        "video_bitrate_kbps": m["video_bitrate_kbps"],
        "codecs": m["video_codecs"],
    }
    if v is not None and root is not None:
        peak, avg = v.playlist.rates(root)
        item.update(
            playlist=v.playlist.name,
            segments=len(v.playlist.segments),
            peak_bitrate=peak,
            average_bitrate=avg,
        )
    return item


def _output(
    spec: PackageSpec,
    manifests: dict[str, str],
    renditions: list[dict[str, Any]],
    audio: dict[str, Any] | None,
    meta: list[dict[str, Any]],
) -> dict[str, Any]:
    durations = [int(m["duration_ms"]) for m in meta if m.get("duration_ms")]
    return {
        "format": spec.format.value,
        "segment_seconds": spec.segment_seconds,
        "manifests": manifests,
        "renditions": renditions,
        "audio": audio,
        "duration_ms": max(durations) if durations else None,
    }
