"""The canonical form of an edit, the one its job key is derived from: defaults filled in,
times as integer milliseconds, floats rounded to a fixed precision, keys in a fixed order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from jobs.encoding import IMPLICIT_PRESET
from jobs.media_ops import TIMED_FIELDS, Fade
from jobs.operations import Crop, Mute, Thumbnail, Trim
from jobs.outputs import (
    ALLOWED_AUDIO,
    ALLOWED_VIDEO,
    CODEC_FIELDS,
    DEFAULT_CRF,
    LOSSLESS_AUDIO,
    NO_CODEC_CONTAINERS,
    AudioCodec,
    VideoCodec,
)
from jobs.packaging.models import canonical_package, canonical_thumbnails
from jobs.spec import EditRequest, output_request


def canonical_output(req: EditRequest) -> dict[str, Any]:
    """Output settings with every default filled in: equal outputs give equal dicts.

    The fields added later appear only when set to something other than what the encoder
    does anyway, so every edit that does not use them keeps its key."""
    out = req.output
    if out.container in NO_CODEC_CONTAINERS:
        return {
            "container": out.container.value,
            "video_codec": None,
            "audio_codec": None,
            "crf": None,
            "video_bitrate_kbps": None,
            "audio_bitrate_kbps": None,
        }
    video = out.video_codec or ALLOWED_VIDEO[out.container][0]
    muted = any(isinstance(op, Mute) for op in req.operations)
    if muted:
        audio = AudioCodec.NONE
    else:
        audio = out.audio_codec or ALLOWED_AUDIO[out.container][0]
    crf = out.crf
    if crf is None and out.video_bitrate_kbps is None and video is not VideoCodec.NONE:
        crf = DEFAULT_CRF[video]
    lossy = audio is not AudioCodec.NONE and audio not in LOSSLESS_AUDIO
    audio_kbps = (out.audio_bitrate_kbps or 128) if lossy else None
    data: dict[str, Any] = {
        "container": out.container.value,
        "video_codec": video.value,
        "audio_codec": audio.value,
        "crf": crf,
        "video_bitrate_kbps": out.video_bitrate_kbps,
        "audio_bitrate_kbps": audio_kbps,
    }
    extras = out.model_dump(mode="json", include=set(CODEC_FIELDS[3:]))
    if extras["preset"] is not None and IMPLICIT_PRESET.get(video.value) == extras["preset"]:
        extras["preset"] = None
    if extras["keyframe_interval"] is not None:
        extras["keyframe_interval_ms"] = extras.pop("keyframe_interval")
    data.update({k: v for k, v in sorted(extras.items()) if v not in (None, False)})
    return data


def canonical_operation(op: BaseModel, where: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """One operation as plain JSON: times renamed to `*_ms`, sources replaced by digests
    (`digests` by the source's JSON path; `where` is the operation's)."""
    data: dict[str, Any] = {}
    for name, value in op.model_dump(mode="json").items():
        if isinstance(op, Trim | Thumbnail) and name in ("start", "end", "at"):
            data[f"{name}_ms"] = value
        elif isinstance(op, Fade) and name in TIMED_FIELDS:
            data[TIMED_FIELDS[name]] = value
        elif isinstance(op, Crop) and name == "crop" and value is None:
            continue  # a rectangle keeps the canonical form it had before "auto" existed
        elif name == "sources":
            data[name] = [{"digest": digests[f"{where}.sources[{j}]"]} for j in range(len(value))]
        elif name == "source":
            data[name] = {"digest": digests[f"{where}.source"]}
        else:
            data[name] = value
    return data


def canonical_edit(req: EditRequest, digests: list[str]) -> dict[str, Any]:
    """The edit as the key sees it. `digests` holds the content digest of each of
    `req.inputs()`, in that order.

    With `outputs`, each output appears as the canonical output of its own edit (with its
    name, size and frame), in the order given, and there is no `output`."""
    by_path = {ref.path: d for ref, d in zip(req.inputs(), digests, strict=True)}
    source = {"digest": by_path["source"]}
    ops = [
        canonical_operation(op, f"operations[{i}]", by_path)
        for i, op in enumerate(req.operations)
    ]
    if req.outputs is None:
        edit = {"source": source, "operations": ops, "output": canonical_output(req)}
    else:
        outputs = [
            {
                "name": out.name,
                "width": out.width,
                "height": out.height,
                "at_ms": out.at,
                **canonical_output(output_request(req, out)),
            }
            for out in req.outputs
        ]
        edit = {"source": source, "operations": ops, "outputs": outputs}
    part = req.chunking.canonical() if req.chunking is not None else None
    if part is not None:
        edit["chunking"] = part
    if req.package is not None:  # absent when unset, so every other edit keeps its key
        edit["package"] = canonical_package(req.package)
    if req.thumbnails is not None:
        edit["thumbnails"] = canonical_thumbnails(req.thumbnails)
    return edit
