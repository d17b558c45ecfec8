"""The edit request: a source, typed operations and output settings.

Every number is bounded and every string is an enum or a checked pattern, so nothing a
client writes can reach a shell, an ffmpeg filter graph or a file path as free text.
`canonical_edit` gives the form the job key is derived from: defaults filled in, times as
integer milliseconds, floats rounded to a fixed precision, keys in a fixed order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from jobs.timecode import Millis

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _ms_aliases(data: Any, *names: str) -> Any:
    """Accept `start_ms: 1500` (the canonical spelling) as well as `start: 1.5`."""
    if isinstance(data, dict):
        for name in names:
            ms_name = f"{name}_ms"
            if ms_name in data:
                if name in data:
                    raise ValueError(f"give either '{name}' or '{ms_name}', not both")
                value = data[ms_name]
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ValueError(f"'{ms_name}' must be a whole number of milliseconds")
                data = {k: v for k, v in data.items() if k != ms_name}
                data[name] = None if value is None else f"{value}ms"
    return data


class Source(_Strict):
    """A file to edit: a path inside a configured source root, an uploaded blob, or an
    object in a bucket prefix granted to the tenant."""

    path: str | None = Field(default=None, min_length=1, max_length=1024)
    digest: str | None = Field(default=None, description="sha256:<64 hex> of an uploaded blob")
    s3: str | None = Field(
        default=None, max_length=1100, description="s3://bucket/key in a prefix granted to you"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if sum(v is not None for v in (self.path, self.digest, self.s3)) != 1:
            raise ValueError("a source has exactly one of 'path', 'digest' or 's3'")
        if self.s3 is not None:
            parse_s3_url(self.s3)
        if self.digest is not None and not DIGEST_RE.match(self.digest):
            raise ValueError(
                "'digest' must look like 'sha256:' followed by 64 lowercase hex digits"
            )
        if self.path is not None:
            if _CONTROL.search(self.path) or not _utf8(self.path):
                raise ValueError("'path' must not contain control characters or lone surrogates")
            if ".." in self.path.replace("\\", "/").split("/"):
                raise ValueError("'path' must not contain '..' segments")
        return self


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_url(url: str, *, prefix: bool = False) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`. Keys are taken literally, so segments that a
    file-backed server could read as directories (empty, '.', '..') are refused."""
    if not url.startswith("s3://"):
        raise ValueError("'s3' must look like s3://bucket/key")
    bucket, _, key = url[5:].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError("the bucket name in 's3' must be 3-63 of a-z, 0-9, '.' and '-'")
    if _CONTROL.search(key) or not _utf8(key) or len(key.encode()) > 1024:
        raise ValueError("the key in 's3' must be at most 1024 bytes with no control characters")
    segments = key.split("/")
    if prefix and segments and segments[-1] == "":
        segments = segments[:-1]
    if (not key and not prefix) or any(seg in ("", ".", "..") for seg in segments):
        raise ValueError("the key in 's3' must not be empty or have empty, '.' or '..' segments")
    return bucket, key


class Trim(_Strict):
    """Keep [start, end) of the source timeline. `fast` allows stream copy (keyframe cuts)."""

    op: Literal["trim"]
    start: Millis = 0
    end: Millis | None = None
    fast: bool = False

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _ms_aliases(data, "start", "end")

    @model_validator(mode="after")
    def _ordered(self) -> Trim:
        if self.end is not None and self.end <= self.start:
            raise ValueError("trim 'end' must be after 'start'")
        return self


class Scale(_Strict):
    """Resize; give one side to keep the aspect ratio."""

    op: Literal["scale"]
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)

    @model_validator(mode="after")
    def _one_side(self) -> Scale:
        if self.width is None and self.height is None:
            raise ValueError("scale needs 'width', 'height' or both")
        return self


class Crop(_Strict):
    op: Literal["crop"]
    x: int = Field(default=0, ge=0, le=7680)
    y: int = Field(default=0, ge=0, le=4320)
    width: int = Field(ge=16, le=7680)
    height: int = Field(ge=16, le=4320)


class Fps(_Strict):
    op: Literal["fps"]
    fps: float = Field(ge=1, le=120)

    @field_validator("fps")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 3)


class Rotate(_Strict):
    op: Literal["rotate"]
    degrees: Literal[90, 180, 270]


class FlipDirection(StrEnum):
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"


class Flip(_Strict):
    op: Literal["flip"]
    direction: FlipDirection


class Speed(_Strict):
    """Play faster or slower, video and audio together."""

    op: Literal["speed"]
    factor: float = Field(ge=0.25, le=4)

    @field_validator("factor")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 3)


class Mute(_Strict):
    op: Literal["mute"]


class Volume(_Strict):
    op: Literal["volume"]
    db: float = Field(ge=-60, le=20)

    @field_validator("db")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 2)


class Thumbnail(_Strict):
    """One frame at `at` as a jpg or png; must be the last operation."""

    op: Literal["thumbnail"]
    at: Millis = 0

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _ms_aliases(data, "at")


class Concat(_Strict):
    """Append these sources after the main one; must be the first operation."""

    op: Literal["concat"]
    sources: list[Source] = Field(min_length=1, max_length=16)


class Position(StrEnum):
    TOP_LEFT = "top_left"
    TOP_RIGHT = "top_right"
    BOTTOM_LEFT = "bottom_left"
    BOTTOM_RIGHT = "bottom_right"
    CENTER = "center"


class Watermark(_Strict):
    """Overlay an image source at a corner or the centre."""

    op: Literal["watermark"]
    source: Source
    position: Position = Position.BOTTOM_RIGHT
    margin: int = Field(default=16, ge=0, le=1000)
    width: int | None = Field(default=None, ge=8, le=4096)
    opacity: float = Field(default=1.0, ge=0, le=1)

    @field_validator("opacity")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 3)


Operation = Annotated[
    Trim
    | Scale
    | Crop
    | Fps
    | Rotate
    | Flip
    | Speed
    | Mute
    | Volume
    | Thumbnail
    | Concat
    | Watermark,
    Field(discriminator="op"),
]


class Container(StrEnum):
    MP4 = "mp4"
    WEBM = "webm"
    MKV = "mkv"
    MOV = "mov"
    GIF = "gif"
    JPG = "jpg"
    PNG = "png"


class VideoCodec(StrEnum):
    H264 = "h264"
    HEVC = "hevc"
    VP9 = "vp9"
    AV1 = "av1"


class AudioCodec(StrEnum):
    AAC = "aac"
    OPUS = "opus"
    MP3 = "mp3"
    NONE = "none"


IMAGE_CONTAINERS = frozenset({Container.JPG, Container.PNG})
NO_CODEC_CONTAINERS = frozenset({Container.GIF, Container.JPG, Container.PNG})

ALLOWED_VIDEO: dict[Container, tuple[VideoCodec, ...]] = {
    Container.MP4: (VideoCodec.H264, VideoCodec.HEVC, VideoCodec.AV1),
    Container.MOV: (VideoCodec.H264, VideoCodec.HEVC),
    Container.MKV: (VideoCodec.H264, VideoCodec.HEVC, VideoCodec.VP9, VideoCodec.AV1),
    Container.WEBM: (VideoCodec.VP9, VideoCodec.AV1),
}
ALLOWED_AUDIO: dict[Container, tuple[AudioCodec, ...]] = {
    Container.MP4: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.OPUS, AudioCodec.NONE),
    Container.MOV: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.NONE),
    Container.MKV: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.OPUS, AudioCodec.NONE),
    Container.WEBM: (AudioCodec.OPUS, AudioCodec.NONE),
}
DEFAULT_CRF: dict[VideoCodec, int] = {
    VideoCodec.H264: 23,
    VideoCodec.HEVC: 28,
    VideoCodec.VP9: 32,
    VideoCodec.AV1: 35,
}
MAX_CRF: dict[VideoCodec, int] = {
    VideoCodec.H264: 51,
    VideoCodec.HEVC: 51,
    VideoCodec.VP9: 63,
    VideoCodec.AV1: 63,
}


class Output(_Strict):
    """Container and encoding. Omitted fields get per-container defaults."""

    container: Container = Container.MP4
    video_codec: VideoCodec | None = None
    audio_codec: AudioCodec | None = None
    crf: int | None = Field(default=None, ge=0, le=63)
    video_bitrate_kbps: int | None = Field(default=None, ge=50, le=200_000)
    audio_bitrate_kbps: int | None = Field(default=None, ge=32, le=512)


class EditRequest(_Strict):
    """What a client posts. Only `source`, `operations` and `output` shape the job key."""

    source: Source
    operations: list[Operation] = Field(default_factory=list, max_length=32)
    output: Output = Field(default_factory=Output)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not LABEL_KEY_RE.match(key):
                raise ValueError(f"label key {key[:40]!r} must be 1-63 of a-z, 0-9, '_', '.', '-'")
            if len(value) > 256 or _CONTROL.search(value) or not _utf8(value):
                raise ValueError(f"label {key!r} must be at most 256 printable characters")
        return labels

    @model_validator(mode="after")
    def _coherent(self) -> EditRequest:
        check_coherent(self)
        return self

    def sources(self) -> Iterator[Source]:
        """Every input file of the edit, main source first."""
        yield self.source
        for op in self.operations:
            if isinstance(op, Concat):
                yield from op.sources
            elif isinstance(op, Watermark):
                yield op.source


def check_coherent(req: EditRequest) -> None:
    """Cross-field rules that a single field cannot express."""
    ops = req.operations
    kinds = [op.op for op in ops]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise ValueError(f"operation '{kind}' may appear at most once")
    for i, op in enumerate(ops):
        if isinstance(op, Concat) and i != 0:
            raise ValueError("'concat' must be the first operation (it builds the timeline)")
        if isinstance(op, Trim) and any(k != "concat" for k in kinds[:i]):
            raise ValueError("'trim' must come first, or right after 'concat'")
        if isinstance(op, Thumbnail) and i != len(ops) - 1:
            raise ValueError("'thumbnail' must be the last operation")
    if "mute" in kinds and "volume" in kinds:
        raise ValueError("'mute' and 'volume' cannot be combined")
    out = req.output
    thumbnail = bool(ops) and isinstance(ops[-1], Thumbnail)
    if thumbnail != (out.container in IMAGE_CONTAINERS):
        raise ValueError(
            "a 'thumbnail' operation needs output container 'jpg' or 'png', and those "
            "containers need a 'thumbnail' operation"
        )
    if out.container in NO_CODEC_CONTAINERS:
        for name in (
            "video_codec",
            "audio_codec",
            "crf",
            "video_bitrate_kbps",
            "audio_bitrate_kbps",
        ):
            if getattr(out, name) is not None:
                raise ValueError(f"output '{name}' does not apply to container '{out.container}'")
        if "volume" in kinds or "mute" in kinds:
            raise ValueError(f"container '{out.container}' has no audio: drop 'mute'/'volume'")
        return
    if out.video_codec is not None and out.video_codec not in ALLOWED_VIDEO[out.container]:
        allowed = ", ".join(ALLOWED_VIDEO[out.container])
        raise ValueError(
            f"video_codec '{out.video_codec}' is not allowed in '{out.container}' "
            f"(allowed: {allowed})"
        )
    if out.audio_codec is not None and out.audio_codec not in ALLOWED_AUDIO[out.container]:
        allowed = ", ".join(ALLOWED_AUDIO[out.container])
        raise ValueError(
            f"audio_codec '{out.audio_codec}' is not allowed in '{out.container}' "
            f"(allowed: {allowed})"
        )
    if out.crf is not None and out.video_bitrate_kbps is not None:
        raise ValueError("give either output 'crf' or 'video_bitrate_kbps', not both")
    video = out.video_codec or ALLOWED_VIDEO[out.container][0]
    if out.crf is not None and out.crf > MAX_CRF[video]:
        raise ValueError(f"crf for {video} must be at most {MAX_CRF[video]}")
    if "mute" in kinds and out.audio_codec not in (None, AudioCodec.NONE):
        raise ValueError("'mute' removes the audio: leave audio_codec out or set it to 'none'")
    if out.audio_codec is AudioCodec.NONE and "volume" in kinds:
        raise ValueError("'volume' needs audio, but audio_codec is 'none'")
    if out.audio_bitrate_kbps is not None and out.audio_codec is AudioCodec.NONE:
        raise ValueError("audio_bitrate_kbps does not apply when audio_codec is 'none'")


def canonical_output(req: EditRequest) -> dict[str, Any]:
    """Output settings with every default filled in: equal outputs give equal dicts."""
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
    if crf is None and out.video_bitrate_kbps is None:
        crf = DEFAULT_CRF[video]
    audio_kbps = None if audio is AudioCodec.NONE else (out.audio_bitrate_kbps or 128)
    return {
        "container": out.container.value,
        "video_codec": video.value,
        "audio_codec": audio.value,
        "crf": crf,
        "video_bitrate_kbps": out.video_bitrate_kbps,
        "audio_bitrate_kbps": audio_kbps,
    }


def canonical_operation(op: BaseModel, digests: Iterator[str]) -> dict[str, Any]:
    """One operation as plain JSON: times renamed to `*_ms`, sources replaced by digests."""
    data: dict[str, Any] = {}
    for name, value in op.model_dump(mode="json").items():
        if isinstance(op, Trim | Thumbnail) and name in ("start", "end", "at"):
            data[f"{name}_ms"] = value
        elif name == "sources":
            data[name] = [{"digest": next(digests)} for _ in value]
        elif name == "source":
            data[name] = {"digest": next(digests)}
        else:
            data[name] = value
    return data


def canonical_edit(req: EditRequest, digests: list[str]) -> dict[str, Any]:
    """The edit as the key sees it. `digests` holds each of `req.sources()`'s content digest."""
    it = iter(digests)
    source = {"digest": next(it)}
    ops = [canonical_operation(op, it) for op in req.operations]
    if next(it, None) is not None:
        raise ValueError("more digests than sources")
    return {"source": source, "operations": ops, "output": canonical_output(req)}
