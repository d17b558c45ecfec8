"""Reading an ffmpeg argv back into its meaning, for tests: global options, inputs (options
and file), the filter graph as filters with their options and links, and outputs (maps,
options, file). Tests then assert what the command does rather than how ffmpeg-python
happened to spell it (it sorts options and names links [sN])."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEAD_FLAGS = frozenset({"-nostdin", "-hide_banner", "-y", "-nostats"})
_HEAD_VALUED = frozenset({"-loglevel", "-progress"})
_FLAGS = frozenset({"-an", "-vn", "-sn", "-dn"})
_PART = re.compile(r"((?:\[[^\]]+\])*)([a-z0-9_]+)(?:=([^\[]*))?((?:\[[^\]]+\])*)")
_LABELS = re.compile(r"\[([^\]]+)\]")


@dataclass
class Filter:
    ins: list[str]
    name: str
    args: list[str]
    opts: dict[str, str]
    outs: list[str]


@dataclass
class Endpoint:
    options: dict[str, str | None]
    path: str
    maps: list[str] = field(default_factory=list)


@dataclass
class Parsed:
    head: list[str]
    inputs: list[Endpoint]
    filters: list[Filter]
    outputs: list[Endpoint]

    def producer(self, label: str) -> Filter | None:
        found = [f for f in self.filters if label in f.outs]
        assert len(found) <= 1, f"label {label} made twice"
        return found[0] if found else None

    def chain(self, mapped: str) -> list[Filter]:
        """The filters from the source to the mapped stream `mapped` ("[s3]" or a label),
        following each filter's first input (the main picture or sound)."""
        label = mapped.strip("[]")
        out: list[Filter] = []
        while (node := self.producer(label)) is not None:
            out.insert(0, node)
            if not node.ins:
                break
            label = node.ins[0]
        return out

    def source(self, mapped: str) -> str:
        """The input stream ("0:0", "1:a:0") at the start of `chain(mapped)`."""
        chain = self.chain(mapped)
        return chain[0].ins[0] if chain and chain[0].ins else mapped

    def names(self, mapped: str) -> list[str]:
        return [f.name for f in self.chain(mapped)]

    def named(self, name: str) -> list[Filter]:
        return [f for f in self.filters if f.name == name]


def parse(argv: list[str]) -> Parsed:
    tokens = argv[1:]
    i = 0
    head: list[str] = []
    while i < len(tokens) and (tokens[i] in _HEAD_FLAGS or tokens[i] in _HEAD_VALUED):
        n = 2 if tokens[i] in _HEAD_VALUED else 1
        head += tokens[i : i + n]
        i += n
    inputs: list[Endpoint] = []
    filters: list[Filter] = []
    outputs: list[Endpoint] = []
    options: dict[str, str | None] = {}
    maps: list[str] = []
    while i < len(tokens):
        token = tokens[i]
        if token == "-i":
            assert not maps, "an input after a -map"
            inputs.append(Endpoint(options, tokens[i + 1]))
            options, i = {}, i + 2
        elif token == "-filter_complex":
            assert not options and not filters, "options before the graph, or two graphs"
            filters = parse_graph(tokens[i + 1])
            i += 2
        elif token == "-map":
            maps.append(tokens[i + 1])
            i += 2
        elif token in _FLAGS:
            options[token[1:]] = None
            i += 1
        elif token.startswith("-") and token != "-":
            assert token[1:] not in options, f"{token} given twice"
            options[token[1:]] = tokens[i + 1]
            i += 2
        else:
            outputs.append(Endpoint(options, token, maps))
            options, maps, i = {}, [], i + 1
    assert not options and not maps, "options after the last output"
    return Parsed(head, inputs, filters, outputs)


def parse_graph(graph: str) -> list[Filter]:
    """ffmpeg-python writes one filter per chain: `[in]name=a:b:k=v[out]`."""
    out: list[Filter] = []
    for part in graph.split(";"):
        m = _PART.fullmatch(part)
        assert m, f"not one filter: {part!r}"
        args: list[str] = []
        opts: dict[str, str] = {}
        for item in (m.group(3) or "").split(":") if m.group(3) else []:
            key, eq, value = item.partition("=")
            if eq:
                opts[key] = value
            else:
                assert not opts, f"a positional option after named ones: {part!r}"
                args.append(item)
        ins, outs = _LABELS.findall(m.group(1)), _LABELS.findall(m.group(4))
        out.append(Filter(ins, m.group(2), args, opts, outs))
    return out
