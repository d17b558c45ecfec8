"""Hardened ffmpeg argument lists from ffmpeg-python graphs: the shared last step of every
command builder (edits, and the rendition/package/sprite builders) before `run.run_ffmpeg`.

ffmpeg-python compiles a stream graph to an argument list (never a shell string). This module
adds what it does not know about, and checks the result:

- `source(path, demuxer)`: an input read through the `file` protocol only, with the demuxer
  allowlist and the probed demuxer forced, from an absolute path that cannot be taken for an
  option, a protocol or an image sequence.
- `sink(streams, path, ...)` / `null_sink(streams)`: a file output written through the
  `file` protocol only with metadata and chapters dropped, or the null muxer.
- `compile_argv(out, ffmpeg)`: `-nostdin -hide_banner -y -loglevel error -nostats` first
  (ffmpeg ignores global options placed after the last output, where ffmpeg-python puts
  them), `-progress pipe:1` if asked, then the graph's arguments. Refuses a graph whose
  inputs or outputs were not made here and a filter graph with characters outside
  `graph.py`'s set, so request text cannot reach a filter graph.

    out = hardened.sink([hardened.source(path, probe.demuxer)["0"]], target, format="mp4")
    argv = hardened.compile_argv(out, ffmpeg)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ffmpeg
from ffmpeg.nodes import InputNode, OutputNode, get_stream_spec_nodes

from workers.ffmpeg.graph import GRAPH_CHARS
from workers.ffmpeg.probe import FORMAT_WHITELIST, INPUT_FORMATS, invalid

GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-y", "-loglevel", "error", "-nostats")
PROGRESS_ARGS = ("-progress", "pipe:1")
SUBTITLE_FORMATS = frozenset({"ass", "srt", "webvtt"})
_FLAGS = frozenset({"-an", "-vn", "-sn", "-dn"})
_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f%]")


def file_arg(path: Path) -> str:
    """`file:/abs/path` for a path that is absolute and has no control characters or '%'."""
    text = str(path)
    if not path.is_absolute() or _PATH_CHARS.search(text):
        raise invalid("a file path ffmpeg must not be given")
    return f"file:{text}"


def source(path: Path, demuxer: str | None = None, **options: Any) -> Any:
    """An ffmpeg-python input for one (preflighted) file; `options` are input options
    such as `ss` and `to` (seconds as text)."""
    if demuxer is not None and demuxer not in INPUT_FORMATS:
        raise invalid(f"input format {demuxer!r} is not allowed")
    if demuxer is not None:
        options["format"] = demuxer
    options |= {"protocol_whitelist": "file", "format_whitelist": FORMAT_WHITELIST}
    return _Input("input", kwargs={"filename": file_arg(path), **options}).stream()


def subtitle_source(path: Path, demuxer: str) -> Any:
    """An input for a subtitle file we wrote ourselves: only its own demuxer is allowed."""
    if demuxer not in SUBTITLE_FORMATS:
        raise invalid(f"subtitle format {demuxer!r} is not allowed")
    options = {"protocol_whitelist": "file", "format_whitelist": demuxer, "format": demuxer}
    return _Input("input", kwargs={"filename": file_arg(path), **options}).stream()


def options(args: Sequence[str]) -> dict[str, str | None]:
    """Output options given as an argument list (`["-c:v", "libx264", "-an"]`) as the
    keyword arguments ffmpeg-python takes (which it writes sorted by name: every option
    here is per output or per stream, so their order does not matter to ffmpeg)."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        name = args[i]
        if not name.startswith("-") or name[1:] in out:
            raise ValueError(f"not an option list: {args!r}")
        value = None if name in _FLAGS else args[i + 1]
        out[name[1:]] = value
        i += 1 if value is None else 2
    return out


def sink(streams: Sequence[Any], path: Path, **options: Any) -> Any:
    """A file output of `streams`, through the `file` protocol only, with no metadata or
    chapters copied from the inputs. `options` are output options (`format`, `c`, ...)."""
    size = options.get("video_size")
    if size is not None and not isinstance(size, str):
        # ffmpeg-python 0.2.0 tests a non-string size with `collections.Iterable`, which
        # Python 3.10 removed: write it as "WxH" here.
        options["video_size"] = f"{int(size[0])}x{int(size[1])}"
    return ffmpeg.output(
        *streams,
        file_arg(path),
        protocol_whitelist="file",
        map_metadata="-1",
        map_chapters="-1",
        **options,
    )


def null_sink(streams: Sequence[Any], **options: Any) -> Any:
    """An output that decodes and discards (for measuring passes)."""
    return ffmpeg.output(*streams, "-", format="null", **options)


def compile_argv(
    out: Any, exe: str, *, progress: bool = False, loglevel: str = "error", copyts: bool = False
) -> list[str]:
    """The hardened argv of an ffmpeg-python output (or merged outputs). `loglevel` "info"
    is for passes whose result ffmpeg only logs (cropdetect, loudnorm); `copyts` keeps the
    inputs' timestamps as they are (a chunk's `trim` counts in the source's ticks)."""
    for node in _nodes(out):
        if isinstance(node, InputNode):
            kw = node.kwargs
            if kw.get("protocol_whitelist") != "file" or "format_whitelist" not in kw:
                raise ValueError("an input was not made by hardened.source")
        elif isinstance(node, OutputNode):
            kw = node.kwargs
            null = kw.get("filename") == "-" and kw.get("format") == "null"
            if not null and kw.get("protocol_whitelist") != "file":
                raise ValueError("an output was not made by hardened.sink")
    args: list[str] = [str(a) for a in ffmpeg.get_args(out)]
    for before, token in itertools.pairwise(args):
        if before == "-filter_complex" and not GRAPH_CHARS.fullmatch(token):
            raise ValueError(f"refusing a filter graph with unexpected characters: {token!r}")
    head = list(GLOBAL_ARGS)
    if loglevel != "error":
        if loglevel not in ("info", "warning"):
            raise ValueError(f"unexpected log level {loglevel!r}")
        head[head.index("-loglevel") + 1] = loglevel
    head += ["-copyts"] if copyts else []
    return [exe, *head, *(PROGRESS_ARGS if progress else ()), *args]


class _Input(InputNode):  # type: ignore[misc]
    """An input that is itself only: ffmpeg-python merges nodes with equal contents, so two
    concat sources of the same file would become one input feeding one chain twice (which
    ffmpeg refuses without a `split`)."""

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def _nodes(out: Any) -> list[Any]:
    """Every node upstream of `out`."""
    seen: list[Any] = []
    todo = list(get_stream_spec_nodes(out))
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.append(node)
        todo += [edge.upstream_node for edge in node.incoming_edges]
    return seen
