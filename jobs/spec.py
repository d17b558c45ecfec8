"""The edit request: a source, typed operations and output settings.

Every number is bounded and every string is an enum or a checked pattern, so nothing a
client writes can reach a shell, an ffmpeg filter graph or a file path as free text.
`canonical_edit` gives the form the job key is derived from: defaults filled in, times as
integer milliseconds, floats rounded to a fixed precision, keys in a fixed order.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jobs import chunking
from jobs.chunking import Chunking
from jobs.encoding import (
    IMPLICIT_PRESET,
    LEVELS,
    PRESETS,
    PROFILES,
    TEN_BIT_CODECS,
    TWO_PASS_CODECS,
    Level,
    Preset,
    Profile,
)
from jobs.media_ops import (
    AUDIO_OPS,
    TIMED_FIELDS,
    Deinterlace,
    Fade,
    Loudnorm,
    Pad,
    SubtitleMode,
    SubtitleStyle,
)
from jobs.packaging.models import Package, Thumbnails, canonical_package, canonical_thumbnails
from jobs.specbase import SpecError, Strict, ms_aliases
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


_Strict = Strict
_ms_aliases = ms_aliases


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
    """A rectangle of the frame, or `"crop": "auto"`: the picture area that cropdetect
    finds (black borders removed), which must come first or right after `trim`."""

    op: Literal["crop"]
    x: int = Field(default=0, ge=0, le=7680)
    y: int = Field(default=0, ge=0, le=4320)
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)
    crop: Literal["auto"] | None = None

    @model_validator(mode="after")
    def _rect_or_auto(self) -> Crop:
        rect = (self.x, self.y, self.width, self.height) != (0, 0, None, None)
        if self.crop == "auto" and rect:
            raise ValueError('give either "crop": "auto" or a rectangle, not both')
        if self.crop is None and (self.width is None or self.height is None):
            raise ValueError("crop needs 'width' and 'height' (or \"crop\": \"auto\")")
        return self


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


class Subtitles(_Strict):
    """Subtitles from an uploaded SRT or WebVTT file (by digest): burned into the picture
    with `style`, or as a soft track with an ISO 639-2 `language`."""

    op: Literal["subtitles"]
    source: Source
    mode: SubtitleMode = SubtitleMode.BURN
    style: SubtitleStyle | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{3}$")

    @model_validator(mode="before")
    @classmethod
    def _default_style(cls, data: Any) -> Any:
        # Burned subtitles always have a style (the defaults if none is given), so leaving
        # it out and spelling the defaults give one canonical form.
        burn = isinstance(data, dict) and data.get("mode", "burn") == "burn"
        if burn and data.get("style") is None:
            data = {**data, "style": {}}
        return data

    @model_validator(mode="after")
    def _fits_mode(self) -> Subtitles:
        if self.mode is SubtitleMode.SOFT and self.style is not None:
            raise ValueError("'style' is for burned subtitles; players style a soft track")
        if self.mode is SubtitleMode.BURN and self.language is not None:
            raise ValueError("'language' is for a soft subtitle track")
        return self


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
    | Watermark
    | Deinterlace
    | Pad
    | Fade
    | Loudnorm
    | Subtitles,
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
    MP3 = "mp3"  # audio only from here on
    M4A = "m4a"
    OGG = "ogg"
    WAV = "wav"
    FLAC = "flac"


class VideoCodec(StrEnum):
    H264 = "h264"
    HEVC = "hevc"
    VP9 = "vp9"
    AV1 = "av1"
    NONE = "none"  # audio only, in webm or mkv


class AudioCodec(StrEnum):
    AAC = "aac"
    OPUS = "opus"
    MP3 = "mp3"
    NONE = "none"
    FLAC = "flac"
    PCM_S16LE = "pcm_s16le"
    PCM_S24LE = "pcm_s24le"


IMAGE_CONTAINERS = frozenset({Container.JPG, Container.PNG})
NO_CODEC_CONTAINERS = frozenset({Container.GIF, Container.JPG, Container.PNG})
AUDIO_CONTAINERS = frozenset(
    {Container.MP3, Container.M4A, Container.OGG, Container.WAV, Container.FLAC}
)
LOSSLESS_AUDIO = frozenset({AudioCodec.FLAC, AudioCodec.PCM_S16LE, AudioCodec.PCM_S24LE})

ALLOWED_VIDEO: dict[Container, tuple[VideoCodec, ...]] = {
    Container.MP4: (VideoCodec.H264, VideoCodec.HEVC, VideoCodec.AV1),
    Container.MOV: (VideoCodec.H264, VideoCodec.HEVC),
    Container.MKV: (
        VideoCodec.H264, VideoCodec.HEVC, VideoCodec.VP9, VideoCodec.AV1, VideoCodec.NONE,
    ),
    Container.WEBM: (VideoCodec.VP9, VideoCodec.AV1, VideoCodec.NONE),
    **{c: (VideoCodec.NONE,) for c in AUDIO_CONTAINERS},
}  # fmt: skip
ALLOWED_AUDIO: dict[Container, tuple[AudioCodec, ...]] = {
    Container.MP4: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.OPUS, AudioCodec.NONE),
    Container.MOV: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.NONE),
    Container.MKV: (
        AudioCodec.AAC, AudioCodec.MP3, AudioCodec.OPUS, AudioCodec.NONE, AudioCodec.FLAC,
    ),
    Container.WEBM: (AudioCodec.OPUS, AudioCodec.NONE),
    Container.MP3: (AudioCodec.MP3,),
    Container.M4A: (AudioCodec.AAC,),
    Container.OGG: (AudioCodec.OPUS, AudioCodec.FLAC),
    Container.WAV: (AudioCodec.PCM_S16LE, AudioCodec.PCM_S24LE),
    Container.FLAC: (AudioCodec.FLAC,),
}  # fmt: skip
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
    # Added with issue 13. Unset, none of them appears in the canonical form, so edits made
    # before them keep their keys.
    audio_sample_rate: (
        Literal[8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000] | None
    ) = None
    audio_channels: Literal[1, 2, 6] | None = None  # 6: 5.1
    preset: Preset | None = None
    profile: Profile | None = None
    level: Level | None = None
    gop_length: int | None = Field(default=None, ge=1, le=1000)
    keyframe_interval: Millis | None = None
    max_bitrate_kbps: int | None = Field(default=None, ge=50, le=200_000)
    buffer_size_kbits: int | None = Field(default=None, ge=50, le=400_000)
    two_pass: bool = False
    bit_depth: Literal[8, 10] | None = None  # unset: keep the source's where the codec can

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "keyframe_interval")

    @field_validator("keyframe_interval")
    @classmethod
    def _keyint(cls, v: int | None) -> int | None:
        if v is not None and not 100 <= v <= 60_000:
            raise ValueError("keyframe_interval must be between 0.1 s and 60 s")
        return v


OUTPUT_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class NamedOutput(Output):
    """One of several outputs (`outputs`): its own encoding and size; `at` picks the frame
    of an image output. The edit's operations apply to every output."""

    name: str = Field(pattern=OUTPUT_NAME_RE)
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)
    at: Millis | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "keyframe_interval", "at")


MIN_RUN_AT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_RUN_AT = dt.datetime(2999, 12, 31, tzinfo=dt.UTC)


class EditRequest(_Strict):
    """What a client posts. Only `source`, `operations` and `output` shape the job key."""

    source: Source
    operations: list[Operation] = Field(default_factory=list, max_length=32)
    output: Output = Field(default_factory=Output)
    # Several named outputs instead of `output`: one task each (see `output_request`).
    outputs: list[NamedOutput] | None = Field(default=None, min_length=1, max_length=16)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)
    # Not before this time (RFC 3339 with an offset; the database clock decides). Not part of
    # the key: the same edit scheduled for another time is the same job.
    run_at: dt.datetime | None = None
    # Chunked parallel encoding (jobs.chunking); part of the key unless it is the default.
    chunking: Chunking | None = None
    # Issue 12: an adaptive-bitrate package and thumbnail sprites of the source (tasks of
    # their own, see jobs.packaging). Part of the key when set.
    package: Package | None = None
    thumbnails: Thumbnails | None = None

    @field_validator("run_at")
    @classmethod
    def _run_at(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "run_at needs a time zone offset (RFC 3339, e.g. 2026-12-01T10:00:00Z)"
            )
        if not MIN_RUN_AT <= value <= MAX_RUN_AT:
            raise ValueError("run_at must be between 2000-01-01 and 2999-12-31 (UTC)")
        return value.astimezone(dt.UTC)

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
        if self.outputs is None:
            check_coherent(self)
        else:
            check_outputs(self)
            chunking.check(self)  # `on` refuses named outputs (check_coherent's, otherwise)
        return self

    def sources(self) -> Iterator[Source]:
        """Every input file of the edit, main source first."""
        yield self.source
        for op in self.operations:
            if isinstance(op, Concat):
                yield from op.sources
            elif isinstance(op, Watermark | Subtitles):
                yield op.source


_NO_AUDIO_OPS = frozenset({"mute", "volume", "loudnorm"})


def output_request(req: EditRequest, out: NamedOutput) -> EditRequest:
    """The single-output edit that makes one named output: the shared operations, then a
    scale to its size, then (an image) the frame at `at`. Audio operations do not apply to
    an image output and are left out of it."""
    ops: list[Any] = list(req.operations)
    image = out.container in IMAGE_CONTAINERS
    if image:
        ops = [op for op in ops if op.op not in _NO_AUDIO_OPS]
    thumb = ops.pop() if ops and isinstance(ops[-1], Thumbnail) else None
    if out.width is not None or out.height is not None:
        ops.append(Scale.model_validate({"op": "scale", "width": out.width, "height": out.height}))
    if image and thumb is None:
        thumb = Thumbnail.model_validate({"op": "thumbnail", "at_ms": out.at or 0})
    if thumb is not None:
        ops.append(thumb)
    fields = out.model_dump(exclude={"name", "width", "height", "at"}, exclude_unset=True)
    if fields.get("keyframe_interval") is not None:  # integer ms: give it as such
        fields["keyframe_interval_ms"] = fields.pop("keyframe_interval")
    return EditRequest.model_validate(
        {"source": req.source, "operations": ops, "output": Output.model_validate(fields)}
    )


def check_outputs(req: EditRequest) -> None:
    """`outputs`: unique names, not beside `output`, each output coherent with the edit."""
    assert req.outputs is not None
    if "output" in req.model_fields_set:
        raise SpecError("outputs", "give either 'output' or 'outputs', not both")
    seen: set[str] = set()
    for i, out in enumerate(req.outputs):
        if out.name in seen:
            raise SpecError(f"outputs[{i}].name", f"output name {out.name!r} is used twice")
        seen.add(out.name)
        if out.at is not None and out.container not in IMAGE_CONTAINERS:
            raise SpecError(f"outputs[{i}].at", "'at' picks the frame of a jpg or png output")
        try:
            output_request(req, out)
        except ValidationError as exc:
            err = exc.errors()[0]
            cause = (err.get("ctx") or {}).get("error")
            where = cause.path if isinstance(cause, SpecError) else ""
            if where.startswith("output."):
                raise SpecError(f"outputs[{i}]{where.removeprefix('output')}", str(cause)) from None
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            about = f" ({where})" if where else ""
            raise SpecError(f"outputs[{i}]", f"{message}{about}") from None


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
        if isinstance(op, Crop) and op.crop == "auto" and any(k != "trim" for k in kinds[:i]):
            raise SpecError(
                f"operations[{i}]",
                '"crop": "auto" must come first or right after \'trim\' (it measures the '
                "source's frame), and cannot follow 'concat'",
            )
    if "mute" in kinds and "volume" in kinds:
        raise ValueError("'mute' and 'volume' cannot be combined")
    for name in ("package", "thumbnails"):
        if getattr(req, name) is not None and ops:
            raise SpecError(
                name,
                f"'{name}' is made from the source as it is: it cannot be combined with "
                "operations yet (submit the edit as its own job)",
            )
    out = req.output
    _check_subtitles(req)
    chunking.check(req)
    thumbnail = bool(ops) and isinstance(ops[-1], Thumbnail)
    if thumbnail != (out.container in IMAGE_CONTAINERS):
        raise ValueError(
            "a 'thumbnail' operation needs output container 'jpg' or 'png', and those "
            "containers need a 'thumbnail' operation"
        )
    if out.container in NO_CODEC_CONTAINERS:
        for name in ("video_codec", "audio_codec", *_CODEC_FIELDS):
            if getattr(out, name) not in (None, False):
                raise SpecError(
                    f"output.{name}",
                    f"output '{name}' does not apply to container '{out.container}'",
                )
        if "volume" in kinds or "mute" in kinds:
            raise ValueError(f"container '{out.container}' has no audio: drop 'mute'/'volume'")
        _check_audio_ops(req, f"container '{out.container}' has no audio")
        return
    if out.video_codec is not None and out.video_codec not in ALLOWED_VIDEO[out.container]:
        allowed = ", ".join(ALLOWED_VIDEO[out.container])
        raise SpecError(
            "output.video_codec",
            f"video_codec '{out.video_codec}' is not allowed in '{out.container}' "
            f"(allowed: {allowed})",
        )
    if out.audio_codec is not None and out.audio_codec not in ALLOWED_AUDIO[out.container]:
        allowed = ", ".join(ALLOWED_AUDIO[out.container])
        raise SpecError(
            "output.audio_codec",
            f"audio_codec '{out.audio_codec}' is not allowed in '{out.container}' "
            f"(allowed: {allowed})",
        )
    if out.crf is not None and out.video_bitrate_kbps is not None:
        raise ValueError("give either output 'crf' or 'video_bitrate_kbps', not both")
    video = out.video_codec or ALLOWED_VIDEO[out.container][0]
    if video is VideoCodec.NONE:
        _check_audio_only(req)
    elif out.crf is not None and out.crf > MAX_CRF[video]:
        raise ValueError(f"crf for {video} must be at most {MAX_CRF[video]}")
    else:
        _check_controls(out, video.value)
    if "mute" in kinds and out.audio_codec not in (None, AudioCodec.NONE):
        raise ValueError("'mute' removes the audio: leave audio_codec out or set it to 'none'")
    if out.audio_codec is AudioCodec.NONE and "volume" in kinds:
        raise ValueError("'volume' needs audio, but audio_codec is 'none'")
    if out.audio_bitrate_kbps is not None and out.audio_codec is AudioCodec.NONE:
        raise ValueError("audio_bitrate_kbps does not apply when audio_codec is 'none'")
    audio = out.audio_codec or ALLOWED_AUDIO[out.container][0]
    if out.audio_bitrate_kbps is not None and audio in LOSSLESS_AUDIO:
        raise SpecError(
            "output.audio_bitrate_kbps", f"audio_bitrate_kbps does not apply to lossless {audio}"
        )
    rates = _RATES.get(audio)
    if out.audio_sample_rate is not None and rates and out.audio_sample_rate not in rates:
        raise SpecError(
            "output.audio_sample_rate",
            f"{audio} takes sample rates {', '.join(map(str, rates))}, not {out.audio_sample_rate}",
        )
    if "mute" in kinds or audio is AudioCodec.NONE:
        for name in ("audio_sample_rate", "audio_channels"):
            if getattr(out, name) is not None:
                raise SpecError(f"output.{name}", f"output '{name}' needs audio in the output")
        _check_audio_ops(req, "the output has no audio ('mute' or audio_codec 'none')")


_RATES = {  # what the encoders take; others have every rate of the enum
    AudioCodec.OPUS: (8000, 16000, 24000, 48000),
    AudioCodec.MP3: (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000),
}


def _check_subtitles(req: EditRequest) -> None:
    for i, op in enumerate(req.operations):
        if not isinstance(op, Subtitles):
            continue
        if op.source.digest is None:
            raise SpecError(
                f"operations[{i}].source",
                "a subtitle file is uploaded first (POST /v1/sources) and given by its digest",
            )
        out = req.output
        if out.container not in SUBTITLE_CONTAINERS or out.video_codec is VideoCodec.NONE:
            allowed = ", ".join(c.value for c in SUBTITLE_CONTAINERS)
            raise SpecError(
                f"operations[{i}]",
                f"subtitles need a video output (allowed containers: {allowed}), "
                f"not '{out.container}'",
            )
        if any(isinstance(o, Speed) for o in req.operations):
            raise SpecError(f"operations[{i}]", "'subtitles' cannot be combined with 'speed'")


SUBTITLE_CONTAINERS = (Container.MP4, Container.MOV, Container.MKV, Container.WEBM)
# Output fields that only video encoding uses.
_CODEC_FIELDS = (
    "crf", "video_bitrate_kbps", "audio_bitrate_kbps", "audio_sample_rate", "audio_channels",
    "preset", "profile", "level", "gop_length", "keyframe_interval", "max_bitrate_kbps",
    "buffer_size_kbits", "two_pass", "bit_depth",
)  # fmt: skip
_VIDEO_FIELDS = _CODEC_FIELDS[:2] + _CODEC_FIELDS[5:]
_VIDEO_OPS_OK_FOR_AUDIO = frozenset({"trim", "speed", "volume", "loudnorm", "fade"})


def _check_audio_ops(req: EditRequest, why: str) -> None:
    for i, op in enumerate(req.operations):
        if op.op in AUDIO_OPS or (isinstance(op, Fade) and not op.video):
            raise SpecError(f"operations[{i}]", f"'{op.op}' needs audio, but {why}")


def _check_audio_only(req: EditRequest) -> None:
    """An output without video: only timeline and audio operations, no video settings."""
    out = req.output
    for name in _VIDEO_FIELDS:
        if getattr(out, name) not in (None, False):
            raise SpecError(f"output.{name}", f"output '{name}' needs a video output")
    for i, op in enumerate(req.operations):
        if isinstance(op, Fade) and not op.audio:
            raise SpecError(f"operations[{i}].audio", "an audio-only output can only fade audio")
        if op.op not in _VIDEO_OPS_OK_FOR_AUDIO:
            allowed = ", ".join(sorted(_VIDEO_OPS_OK_FOR_AUDIO))
            raise SpecError(
                f"operations[{i}]",
                f"'{op.op}' needs a video output, but '{out.container}' here is audio only "
                f"(allowed: {allowed})",
            )
    if "mute" in (op.op for op in req.operations) or out.audio_codec is AudioCodec.NONE:
        raise SpecError("output.audio_codec", "an audio-only output needs an audio codec")


def _check_controls(out: Output, video: str) -> None:
    """Encoder controls that only some codecs have."""
    tables = (("preset", PRESETS), ("profile", PROFILES), ("level", LEVELS))
    for name, table in tables:
        value = getattr(out, name)
        allowed = table.get(video, ())
        if value is not None and value not in allowed:
            what = ", ".join(allowed) if allowed else "none"
            raise SpecError(
                f"output.{name}", f"{name} '{value}' is not one for {video} (allowed: {what})"
            )
    if out.two_pass:
        if video not in TWO_PASS_CODECS:
            raise SpecError(
                "output.two_pass", f"two_pass is for {', '.join(TWO_PASS_CODECS)}, not {video}"
            )
        if out.video_bitrate_kbps is None:
            raise SpecError("output.two_pass", "two_pass needs a 'video_bitrate_kbps' to aim at")
    if (out.max_bitrate_kbps is None) != (out.buffer_size_kbits is None):
        raise SpecError(
            "output.buffer_size_kbits"
            if out.buffer_size_kbits is None
            else "output.max_bitrate_kbps",
            "give 'max_bitrate_kbps' and 'buffer_size_kbits' together (a VBV constraint)",
        )
    if out.bit_depth == 10 and video not in TEN_BIT_CODECS:
        raise SpecError(
            "output.bit_depth",
            f"bit_depth 10 needs video_codec {', '.join(TEN_BIT_CODECS)} (not {video})",
        )
    if out.profile is Profile.MAIN10 and out.bit_depth == 8:
        raise SpecError("output.profile", "profile 'main10' is for bit_depth 10")
    if out.profile is Profile.MAIN and video == "hevc" and out.bit_depth == 10:
        raise SpecError("output.profile", "hevc profile 'main' is 8-bit: use 'main10'")


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
    extras = out.model_dump(mode="json", include=set(_CODEC_FIELDS[3:]))
    if extras["preset"] is not None and IMPLICIT_PRESET.get(video.value) == extras["preset"]:
        extras["preset"] = None
    if extras["keyframe_interval"] is not None:
        extras["keyframe_interval_ms"] = extras.pop("keyframe_interval")
    data.update({k: v for k, v in sorted(extras.items()) if v not in (None, False)})
    return data


def canonical_operation(op: BaseModel, digests: Iterator[str]) -> dict[str, Any]:
    """One operation as plain JSON: times renamed to `*_ms`, sources replaced by digests."""
    data: dict[str, Any] = {}
    for name, value in op.model_dump(mode="json").items():
        if isinstance(op, Trim | Thumbnail) and name in ("start", "end", "at"):
            data[f"{name}_ms"] = value
        elif isinstance(op, Fade) and name in TIMED_FIELDS:
            data[TIMED_FIELDS[name]] = value
        elif isinstance(op, Crop) and name == "crop" and value is None:
            continue  # a rectangle keeps the canonical form it had before "auto" existed
        elif name == "sources":
            data[name] = [{"digest": next(digests)} for _ in value]
        elif name == "source":
            data[name] = {"digest": next(digests)}
        else:
            data[name] = value
    return data


def canonical_edit(req: EditRequest, digests: list[str]) -> dict[str, Any]:
    """The edit as the key sees it. `digests` holds each of `req.sources()`'s content digest.

    With `outputs`, each output appears as the canonical output of its own edit (with its
    name, size and frame), in the order given, and there is no `output`."""
    it = iter(digests)
    source = {"digest": next(it)}
    ops = [canonical_operation(op, it) for op in req.operations]
    if next(it, None) is not None:
        raise ValueError("more digests than sources")
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
