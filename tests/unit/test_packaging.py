"""The package and thumbnails fields, the auto ladder, the planners and playback tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobs.api.errors import describe
from jobs.canonical import canonical_edit
from jobs.errors import InvalidRequest
from jobs.keys import job_key
from jobs.packaging import Package, plan_package, plan_thumbnails
from jobs.packaging.ladder import auto_ladder, bitrate_for
from jobs.packaging.media import media_type_for
from jobs.packaging.specs import PackageSpec, RenditionSpec, SpritesSpec, parse_task_spec
from jobs.packaging.tokens import (
    PlaybackTokenExpired,
    PlaybackTokenInvalid,
    playback_secret,
    sign,
    verify,
)
from jobs.settings import Settings
from jobs.spec import EditRequest

D = "sha256:" + "a" * 64
KEY = "vj1_" + "0" * 64


def req(**extra: Any) -> EditRequest:
    return EditRequest.model_validate({"source": {"digest": D}, **extra})


def errors_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        EditRequest.model_validate({"source": {"digest": D}, **data})
    return describe(list(info.value.errors()))


@pytest.mark.parametrize(
    "package,path",
    [
        ({"format": "mp4"}, "package.format"),
        ({"segment_seconds": 0}, "package.segment_seconds"),
        ({"ladder": [{"height": 720}, {"height": 100}]}, "package.ladder[1].height"),
        ({"ladder": [{"height": 720}, {"height": "tall"}]}, "package.ladder[1].height"),
        (
            {"ladder": [{"height": 720, "video_bitrate_kbps": 1}]},
            "package.ladder[0].video_bitrate_kbps",
        ),
        ({"ladder": [{"height": 720}, {"height": 720}]}, "package.ladder[1].height"),
        ({"ladder": [{"height": 721}]}, "package.ladder[0].height"),
        ({"ladder": []}, "package.ladder"),
        ({"ladder": "some"}, "package.ladder"),
        ({"ladder": [{"height": 720}], "max_rungs": 2}, "package.max_rungs"),
        ({"min_bitrate_kbps": 5000, "max_bitrate_kbps": 1000}, "package.min_bitrate_kbps"),
        ({"colour": "red"}, "package.colour"),
    ],
)
def test_bad_packages_name_the_json_path(package: dict[str, Any], path: str) -> None:
    details = errors_of({"package": package})
    assert details[0]["path"] == path, details


@pytest.mark.parametrize(
    "thumbs,path",
    [
        ({"interval_seconds": 0}, "thumbnails.interval_seconds"),
        ({"width": 161}, "thumbnails.width"),
        ({"columns": 50}, "thumbnails.columns"),
    ],
)
def test_bad_thumbnails_name_the_json_path(thumbs: dict[str, Any], path: str) -> None:
    assert errors_of({"thumbnails": thumbs})[0]["path"] == path


def test_a_package_with_operations_is_refused_for_now() -> None:
    details = errors_of({"package": {}, "operations": [{"op": "trim", "start": 1}]})
    assert details[0]["path"] == "package" and "operations" in details[0]["message"]


def test_package_and_thumbnails_are_in_the_key_only_when_set() -> None:
    plain = canonical_edit(req(), [D])
    assert "package" not in plain and "thumbnails" not in plain
    hls = canonical_edit(req(package={"format": "hls"}), [D])
    dash = canonical_edit(req(package={"format": "dash"}), [D])
    keys = {job_key("t", e) for e in (plain, hls, dash)}
    assert len(keys) == 3
    assert hls["package"]["segment_seconds"] == 6 and hls["package"]["ladder"] == "auto"


@pytest.mark.parametrize(
    "height,expected",
    [
        (2160, [(2160, 8000), (1080, 6000), (540, 2000), (240, 600)]),
        (1080, [(1080, 6000), (720, 3000), (360, 800), (240, 600)]),
        (720, [(720, 3000), (540, 2000), (360, 800), (240, 600)]),
        (480, [(480, 1600), (360, 800), (240, 600)]),
        (200, [(200, 600)]),
    ],
)
def test_auto_ladder_never_upscales_and_keeps_bitrates_in_bounds(
    height: int, expected: list[tuple[int, int]]
) -> None:
    rungs = auto_ladder(Package(), height)
    assert [(r.height, r.video_bitrate_kbps) for r in rungs] == expected


def test_auto_ladder_takes_its_top_bottom_and_rung_count() -> None:
    rungs = auto_ladder(Package(max_rungs=2, max_bitrate_kbps=4000, min_bitrate_kbps=1000), 1080)
    assert [(r.height, r.video_bitrate_kbps) for r in rungs] == [(1080, 4000), (240, 1000)]
    # Rungs that the clamp would leave at the same bitrate are dropped.
    flat = auto_ladder(Package(max_bitrate_kbps=700), 1080)
    assert [r.video_bitrate_kbps for r in flat] == [700, 600]
    assert bitrate_for(720) == 3000 and bitrate_for(900) == 4500


def test_plan_package_makes_one_rendition_per_rung_and_a_package_task() -> None:
    r = req(package={"format": "cmaf", "segment_seconds": 4})
    inputs = [{"digest": D, "path": "/srv/a.mp4"}]
    plans = plan_package(r, {"width": 1280, "height": 720}, inputs=inputs)
    *rungs, package = plans
    assert [p.name for p in rungs] == ["rung-720", "rung-540", "rung-360", "rung-240"]
    assert all(p.kind == "rendition" and p.depends_on == () and p.publish_as is None for p in rungs)
    assert all(p.spec["inputs"] == inputs and p.spec["kind"] == "rendition" for p in rungs)
    assert package.kind == "package" and package.publish_as == "package"
    assert package.depends_on == tuple(p.name for p in rungs)
    for p in rungs:
        assert parse_task_spec(RenditionSpec, p.spec).segment_seconds == 4
    assert parse_task_spec(PackageSpec, package.spec).renditions == list(package.depends_on)
    (thumbs,) = plan_thumbnails(req(thumbnails={}), {"height": 720}, inputs=inputs)
    assert thumbs.kind == "sprites" and thumbs.publish_as == "thumbnails"
    assert parse_task_spec(SpritesSpec, thumbs.spec).interval_seconds == 10


def test_a_rendition_with_the_same_work_has_the_same_spec_in_any_package() -> None:
    hls = plan_package(req(package={"format": "hls"}), {"height": 720})
    dash = plan_package(req(package={"format": "dash"}), {"height": 720})
    assert [p.spec for p in hls[:-1]] == [p.spec for p in dash[:-1]]  # reusable rungs


def test_plans_refuse_upscaling_and_auto_without_a_height() -> None:
    with pytest.raises(InvalidRequest) as info:
        plan_package(req(package={"ladder": [{"height": 1080}]}), {"height": 720})
    assert info.value.details[0]["path"] == "package.ladder[0].height"
    with pytest.raises(InvalidRequest) as info:
        plan_package(req(package={}), {"height": None})
    assert info.value.details[0]["path"] == "package.ladder"


def test_a_stored_task_spec_that_does_not_fit_fails_for_good() -> None:
    from jobs.errors import PermanentError

    with pytest.raises(PermanentError):
        parse_task_spec(PackageSpec, {"kind": "package", "inputs": [], "format": "hls",
                                      "segment_seconds": 6, "renditions": ["../x"]})  # fmt: skip


def test_tokens_verify_and_refuse_tampering_and_expiry() -> None:
    secret = b"s" * 32
    token = sign(secret, "tenant-a", KEY, 2_000)
    grant = verify(secret, token, now=1_000)
    assert (grant.tenant_id, grant.key, grant.expires) == ("tenant-a", KEY, 2_000)
    with pytest.raises(PlaybackTokenExpired):
        verify(secret, token, now=2_000)
    with pytest.raises(PlaybackTokenInvalid):
        verify(b"t" * 32, token, now=1_000)
    payload, sig = token.split(".")
    for bad in (
        payload + "." + sig[::-1],
        payload[1:] + "." + sig,
        token + ".",
        "é" * 10,
        "x" * 500,
    ):
        with pytest.raises(PlaybackTokenInvalid):
            verify(secret, bad, now=1_000)
    assert all(c.isalnum() or c in "-_." for c in token)


def test_the_playback_secret_is_made_once_per_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    first = playback_secret(s)
    assert len(first) == 32 and (tmp_path / "d" / "playback.key").stat().st_mode & 0o777 == 0o600
    assert playback_secret(Settings(data_dir=tmp_path / "d")) == first
    assert playback_secret(Settings(data_dir=tmp_path, playback_secret="k" * 32)) == b"k" * 32


def test_media_types_players_expect() -> None:
    assert media_type_for("master.m3u8") == "application/vnd.apple.mpegurl"
    assert media_type_for("manifest.mpd") == "application/dash+xml"
    assert media_type_for("stream_0_00001.ts") == "video/mp2t"
    assert media_type_for("init-0.m4s") == "video/mp4"
    assert media_type_for("chunk-0-00001.m4s") == "video/iso.segment"
    assert media_type_for("thumbnails.vtt").startswith("text/vtt")


def test_the_executors_register_by_task_kind() -> None:
    from workers.ffmpeg import packaging_executors
    from workers.ffmpeg.package import PackageExecutor
    from workers.ffmpeg.rendition import RenditionExecutor
    from workers.ffmpeg.sprites import SpritesExecutor

    found = packaging_executors(ffmpeg="/usr/bin/ffmpeg")
    assert {k: type(v) for k, v in found.items()} == {
        "rendition": RenditionExecutor,
        "package": PackageExecutor,
        "sprites": SpritesExecutor,
    }
    kinds = {p.kind for p in plan_package(req(package={}), {"height": 720})}
    kinds |= {p.kind for p in plan_thumbnails(req(thumbnails={}), {"height": 720})}
    assert kinds == set(found)
