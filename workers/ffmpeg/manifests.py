"""HLS playlists of a package: the media playlists ffmpeg wrote, made reproducible, and the
master playlist, written here so that it always has BANDWIDTH, AVERAGE-BANDWIDTH,
RESOLUTION, FRAME-RATE and CODECS (ffmpeg's hls muxer leaves CODECS out on a stream copy).

BANDWIDTH is the peak segment bit rate (RFC 8216 4.3.4.2), measured from the segment files
and their EXTINF durations; a variant that plays an audio rendition adds the audio's peak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import PermanentError
from workers.ffmpeg.abr import AUDIO_CODECS

_EXTINF = re.compile(r"^#EXTINF:(?P<d>\d+(?:\.\d+)?),")
_URI = re.compile(r"^[A-Za-z0-9_.-]+$")
AUDIO_GROUP = "audio"


@dataclass(frozen=True)
class MediaPlaylist:
    name: str  # relative to the package root
    segments: list[tuple[str, float]]  # (relative name, seconds)
    init: str | None = None  # fMP4 initialization segment (EXT-X-MAP)

    def rates(self, root: Path) -> tuple[int, int]:
        """(peak, average) bit rate in bit/s over its segments."""
        peak, total_bits, total_s = 0, 0, 0.0
        for name, seconds in self.segments:
            bits = (root / name).stat().st_size * 8
            total_bits += bits
            total_s += seconds
            if seconds > 0:
                peak = max(peak, round(bits / seconds))
        return peak, round(total_bits / total_s) if total_s else 0

    @property
    def duration(self) -> float:
        return sum(s for _, s in self.segments)


def read_media_playlist(root: Path, name: str) -> MediaPlaylist:
    """Read (and rewrite reproducibly) a VOD media playlist that ffmpeg wrote: the wall-clock
    EXT-X-PROGRAM-DATE-TIME lines the dash muxer adds are dropped, and the playlist says it
    is VOD with independent segments. Every URI must be a plain name in the package root."""
    path = root / name
    lines = path.read_text(encoding="ascii").splitlines()
    out: list[str] = []
    segments: list[tuple[str, float]] = []
    init: str | None = None
    pending: float | None = None
    for line in lines:
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME"):
            continue
        if line.startswith("#EXT-X-MAP:"):
            m = re.fullmatch(r'#EXT-X-MAP:URI="([^"]+)"', line)
            if m is None or not _URI.match(m.group(1)):
                raise _bad(name, "an EXT-X-MAP it cannot read")
            init = m.group(1)
        elif m := _EXTINF.match(line):
            pending = float(m.group("d"))
        elif line and not line.startswith("#"):
            if pending is None or not _URI.match(line):
                raise _bad(name, f"a segment line it cannot read: {line[:60]!r}")
            segments.append((line, pending))
            pending = None
        out.append(line)
    if not segments or "#EXT-X-ENDLIST" not in lines:
        raise _bad(name, "no segments or no end")
    head = [line for line in out[:2] if line.startswith("#EXT")]
    body = out[len(head) :]
    for tag in ("#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"):
        if tag not in body:
            body.insert(0, tag)
    path.write_text("\n".join([*head, *body]) + "\n", encoding="ascii")
    return MediaPlaylist(name, segments, init)


def _bad(name: str, what: str) -> PermanentError:
    return PermanentError(f"ffmpeg wrote a playlist {name} with {what}", code="invalid_output")


@dataclass(frozen=True)
class Variant:
    playlist: MediaPlaylist
    width: int
    height: int
    fps: float
    codecs: str  # the video's, plus the audio's when muxed in


def master_playlist(root: Path, variants: list[Variant], audio: MediaPlaylist | None) -> str:
    """The master playlist text: one EXT-X-STREAM-INF per variant (tallest first) and, with
    a separate audio playlist, one EXT-X-MEDIA audio rendition that every variant names."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7" if audio else "#EXT-X-VERSION:6"]
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    audio_peak = audio_avg = 0
    if audio is not None:
        audio_peak, audio_avg = audio.rates(root)
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="main",DEFAULT=YES,'
            f'AUTOSELECT=YES,CHANNELS="2",URI="{audio.name}"'
        )
    for v in sorted(variants, key=lambda v: -v.height):
        peak, avg = v.playlist.rates(root)
        codecs = f"{v.codecs},{AUDIO_CODECS}" if audio is not None else v.codecs
        attrs = [
            f"BANDWIDTH={peak + audio_peak}",
            f"AVERAGE-BANDWIDTH={avg + audio_avg}",
            f"RESOLUTION={v.width}x{v.height}",
            f"FRAME-RATE={v.fps:.3f}",
            f'CODECS="{codecs}"',
        ]
        if audio is not None:
            attrs.append(f'AUDIO="{AUDIO_GROUP}"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), v.playlist.name]
    return "\n".join(lines) + "\n"
