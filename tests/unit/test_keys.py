"""Job keys are deterministic: pinned golden values, and only output-changing fields count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.canonical import canonical_edit
from jobs.keys import DigestCache, canonical_json, is_job_key, job_key
from jobs.spec import EditRequest

D1 = "sha256:" + "ab" * 32
D2 = "sha256:" + "cd" * 32


def key_of(
    body: dict[str, Any] | str, tenant: str = "tenant-1", digests: list[str] | None = None
) -> str:
    req = (
        EditRequest.model_validate_json(body)
        if isinstance(body, str)
        else EditRequest.model_validate(body)
    )
    return job_key(tenant, canonical_edit(req, digests or [D1]))


GOLDEN = {
    "vj1_2c8147b238b5dedde8bd3772f69f199cbcd57fa8eaba3c9381da27fde87a8f78": (
        {
            "source": {"digest": D1},
            "operations": [{"op": "trim", "start": 1.5, "end": 4}, {"op": "scale", "width": 640}],
        },
        [D1],
    ),
    "vj1_3faf15e182a103fc5475a219f9d90a39e18d094b9c2f0747aaa3074c6cad79e6": (
        {
            "source": {"digest": D1},
            "operations": [{"op": "thumbnail", "at": "00:00:02.000"}],
            "output": {"container": "jpg"},
        },
        [D1],
    ),
    "vj1_050c4ce072aae1a8a7510b6f6e353e36428f0692cf7b4d324603b1f5239880f6": (
        {
            "source": {"digest": D1},
            "operations": [{"op": "watermark", "source": {"digest": D2}, "opacity": 0.5}],
            "output": {"container": "webm"},
        },
        [D1, D2],
    ),
}


@pytest.mark.parametrize("expected", list(GOLDEN))
def test_golden_keys_are_pinned(expected: str) -> None:
    body, digests = GOLDEN[expected]
    assert key_of(body, digests=digests) == expected


def test_key_is_the_same_in_a_fresh_interpreter() -> None:
    body, digests = GOLDEN[next(iter(GOLDEN))]
    code = (
        "import json,sys;from jobs.spec import EditRequest;from jobs.canonical import canonical_edit;"
        "from jobs.keys import job_key;"
        "b,d=json.loads(sys.argv[1]);print(job_key('tenant-1',canonical_edit(EditRequest.model_validate(b),d)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps([body, digests])],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == next(iter(GOLDEN))


def test_key_ignores_json_key_order() -> None:
    a = (
        '{"source": {"digest": "%s"}, "operations": [{"op": "scale", "width": 640, "height": 360}], "output": {"container": "mp4", "crf": 20}}'
        % D1
    )
    b = (
        '{"output": {"crf": 20, "container": "mp4"}, "operations": [{"height": 360, "width": 640, "op": "scale"}], "source": {"digest": "%s"}}'
        % D1
    )
    assert key_of(a) == key_of(b)


def test_key_ignores_number_spelling() -> None:
    a = (
        '{"source": {"digest": "%s"}, "operations": [{"op": "trim", "start": 1.5, "end": 3}, {"op": "speed", "factor": 1.5}]}'
        % D1
    )
    b = (
        '{"source": {"digest": "%s"}, "operations": [{"op": "trim", "start": 1.50, "end": 3.000}, {"op": "speed", "factor": 1.500}]}'
        % D1
    )
    c = (
        '{"source": {"digest": "%s"}, "operations": [{"op": "trim", "start": "1500ms", "end": "00:00:03"}, {"op": "speed", "factor": 1.5}]}'
        % D1
    )
    assert key_of(a) == key_of(b) == key_of(c)


def test_key_ignores_defaults_spelled_out() -> None:
    short = {"source": {"digest": D1}, "operations": [{"op": "trim", "end": 2}]}
    spelled = {
        "source": {"digest": D1},
        "operations": [{"op": "trim", "start": 0, "end": 2, "fast": False}],
        "output": {
            "container": "mp4",
            "video_codec": "h264",
            "audio_codec": "aac",
            "crf": 23,
            "audio_bitrate_kbps": 128,
        },
    }
    assert key_of(short) == key_of(spelled)


def test_canonical_form_resubmits_to_the_same_key() -> None:
    body = {
        "source": {"digest": D1},
        "operations": [{"op": "trim", "start": 1.25, "end": 2}, {"op": "thumbnail", "at": 0.5}],
        "output": {"container": "png"},
    }
    canon = canonical_edit(EditRequest.model_validate(body), [D1])
    assert canon["operations"][0]["start_ms"] == 1250
    assert key_of(canon) == key_of(body)


def test_key_ignores_priority_attempts_and_labels() -> None:
    base = {"source": {"digest": D1}, "operations": [{"op": "mute"}]}
    extra = {**base, "priority": 50, "max_attempts": 9, "labels": {"team": "news"}}
    assert key_of(base) == key_of(extra)


def test_tenants_get_different_keys() -> None:
    body = {"source": {"digest": D1}}
    assert key_of(body, tenant="a") != key_of(body, tenant="b")


@pytest.mark.parametrize(
    "change",
    [
        {"operations": [{"op": "scale", "width": 642}]},
        {"operations": [{"op": "scale", "width": 640}, {"op": "fps", "fps": 30}]},
        {"output": {"container": "mkv"}},
        {"output": {"crf": 24}},
        {"source": {"digest": D2}},
    ],
)
def test_anything_that_changes_the_output_changes_the_key(change: dict[str, Any]) -> None:
    base = {"source": {"digest": D1}, "operations": [{"op": "scale", "width": 640}]}
    changed = {**base, **change}
    digests = [change["source"]["digest"]] if "source" in change else [D1]
    assert key_of(base) != key_of(changed, digests=digests)


def test_operation_order_is_part_of_the_key() -> None:
    a = {
        "source": {"digest": D1},
        "operations": [{"op": "crop", "width": 100, "height": 100}, {"op": "scale", "width": 64}],
    }
    b = {
        "source": {"digest": D1},
        "operations": [{"op": "scale", "width": 64}, {"op": "crop", "width": 100, "height": 100}],
    }
    assert key_of(a) != key_of(b)


def test_every_input_digest_is_in_the_key() -> None:
    body = {"source": {"digest": D1}, "operations": [{"op": "concat", "sources": [{"digest": D2}]}]}
    assert key_of(body, digests=[D1, D2]) != key_of(body, digests=[D1, D1])


def test_canonical_json_is_byte_stable() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == b'{"a":[1.5,"\\u00e9"],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_is_job_key() -> None:
    assert is_job_key(next(iter(GOLDEN)))
    assert not is_job_key("vj1_xyz")
    assert not is_job_key("../../etc/passwd")


def test_digest_cache_reads_a_file_once_until_it_changes(tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 10_000)
    cache = DigestCache()
    first = cache.digest(f)
    assert cache.digest(f) == first
    assert cache.misses == 1
    f.write_bytes(b"y" * 10_001)
    assert cache.digest(f) != first
    assert cache.misses == 2


def test_canonical_form_with_an_open_ended_trim_validates_again() -> None:
    body = {"source": {"digest": D1}, "operations": [{"op": "trim", "start": 2}]}
    canon = canonical_edit(EditRequest.model_validate(body), [D1])
    assert canon["operations"][0]["end_ms"] is None
    assert key_of(canon) == key_of(body)


def test_the_inputs_walk_names_each_source_where_the_key_puts_its_digest() -> None:
    """`EditRequest.inputs()` is the one walk over an edit's sources: the service resolves
    them in its order, and the canonical form puts digest i at input i's JSON path."""
    req = EditRequest.model_validate({
        "source": {"path": "a.mp4"},
        "operations": [
            {"op": "concat", "sources": [{"path": "b.mp4"}, {"digest": "sha256:" + "b" * 64}]},
            {"op": "trim", "start": 0, "end": 1},
            {"op": "watermark", "source": {"path": "logo.png"}},
            {"op": "subtitles", "source": {"digest": "sha256:" + "c" * 64}},
        ],
    })  # fmt: skip
    refs = req.inputs()
    assert [(r.path, r.kind) for r in refs] == [
        ("source", "main"),
        ("operations[0].sources[0]", "concat"),
        ("operations[0].sources[1]", "concat"),
        ("operations[2].source", "watermark"),
        ("operations[3].source", "subtitles"),
    ]
    assert [r.image_ok for r in refs] == [False, False, False, True, False]
    assert [r.is_media for r in refs] == [True, True, True, True, False]
    digests = [f"sha256:{i:064d}" for i in range(len(refs))]
    edit = canonical_edit(req, digests)
    found: dict[str, str] = {}

    def walk(value: object, where: str) -> None:
        if isinstance(value, dict):
            if set(value) == {"digest"}:
                found[where] = value["digest"]
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(edit, "")
    assert found == {r.path: d for r, d in zip(refs, digests, strict=True)}
    with pytest.raises(ValueError):  # one digest too few
        canonical_edit(req, digests[:-1])
