"""What building one edit command costs: `build_command` alone (pure: probe results in, argv
out; no ffmpeg is run, the encoder list is fixed), in microseconds per call.

    .venv/bin/python -m bench.command_build [--rounds 5] [--against DIR]

`--against DIR` also times another source tree of vidjobs (for example `git archive main`
unpacked in a temporary directory) in the same rounds, interleaved with this one, each round
in fresh processes, and prints the ratio within each round. Figures are median (min-max)
over the rounds (`bench/stats.py`), each round's figure the median of several timeit repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "2" * 64
ENCODERS = frozenset({"libx264", "libx265", "libvpx-vp9", "aac", "libopus", "libmp3lame"})
CASES: dict[str, dict[str, Any]] = {
    "trim + scale, mp4": {
        "operations": [{"op": "trim", "start": 2, "end": 8}, {"op": "scale", "width": 640}],
        "inputs": 1,
    },
    "concat + scale + crop + volume + watermark, mkv/vp9": {
        "operations": [
            {"op": "concat", "sources": [{"digest": DIGEST}]},
            {"op": "scale", "width": 640},
            {"op": "crop", "x": 2, "y": 2, "width": 600, "height": 340},
            {"op": "volume", "db": -3},
            {"op": "watermark", "source": {"digest": DIGEST}, "position": "top_right"},
        ],
        "output": {"container": "mkv", "video_codec": "vp9"},
        "inputs": 3,
    },
}


def measure_here(number: int, repeats: int) -> dict[str, float]:
    """Microseconds per build_command call of each case, in this process's source tree."""
    from jobs import spec as spec_module
    from jobs.spec import EditRequest

    # A tree from before jobs.spec was split (--against an older main) has it there. (Not an
    # ImportError fallback: the editable install would find jobs.canonical in this tree.)
    canonical_edit: Any = getattr(spec_module, "canonical_edit", None)
    if canonical_edit is None:
        from jobs.canonical import canonical_edit
    from workers.ffmpeg.command import build_command
    from workers.ffmpeg.probe import Probe, Stream

    video = Probe(
        "mov,mp4,m4a,3gp,3g2,mj2",
        10000,
        (Stream(0, "video", "h264", 1280, 720, 30.0), Stream(1, "audio", "aac")),
        1280,
        720,
        "h264",
        True,
        10**7,
        0,
        30.0,
    )
    logo = Probe(
        "png_pipe",
        None,
        (Stream(0, "video", "png", 64, 32, 25.0),),
        64,
        32,
        "png",
        False,
        100,
        0,
        25.0,
    )
    out: dict[str, float] = {}
    for name, case in CASES.items():
        req = EditRequest.model_validate(
            {
                "source": {"digest": DIGEST},
                "operations": case["operations"],
                "output": case.get("output", {}),
            }
        )
        n = case["inputs"]
        spec = canonical_edit(req, [DIGEST] * n)  # one digest per input, in spec order
        probes = [video] * (n - 1) + [logo] if n > 1 else [video]
        inputs = [Path(f"/data/in{i}.bin") for i in range(n)]
        target = Path("/work/out." + req.output.container.value)

        def once(
            spec: Any = spec, probes: Any = probes, inputs: Any = inputs, target: Path = target
        ) -> Any:
            return build_command("/usr/bin/ffmpeg", spec, inputs, probes, target, ENCODERS)

        once()  # imports and caches warm
        times = timeit.repeat(once, number=number, repeat=repeats)
        out[name] = statistics.median(times) / number * 1e6
    return out


def _round(tree: Path, number: int, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import workers; "
        "assert workers.__file__.startswith(sys.argv[1]), workers.__file__; "
        f"from importlib.util import spec_from_file_location, module_from_spec; "
        f"s = spec_from_file_location('b', {str(Path(__file__).resolve())!r}); "
        "m = module_from_spec(s); s.loader.exec_module(m); "
        "print(json.dumps(m.measure_here(int(sys.argv[2]), int(sys.argv[3]))))"
    )
    argv = [sys.executable, "-c", code, str(tree), str(number), str(repeats)]
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    from bench.stats import load_average, spread

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another vidjobs source tree")
    args = parser.parse_args()
    trees = {"this tree": HERE}
    if args.against is not None:
        trees["against"] = args.against.resolve()
    rows: dict[str, dict[str, list[float]]] = {t: {c: [] for c in CASES} for t in trees}
    ratios: dict[str, list[float]] = {c: [] for c in CASES}
    names = list(trees)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotated each round
        got = {t: _round(trees[t], args.number, args.repeats) for t in order}
        for t in names:
            for c in CASES:
                rows[t][c].append(got[t][c])
        if "against" in got:
            for c in CASES:
                ratios[c].append(got["this tree"][c] / got["against"][c])
    print(
        f"build_command, microseconds per call, {args.rounds} interleaved rounds; {load_average()}"
    )
    for c in CASES:
        for t in names:
            print(f"  {c:<52} {t:<10} {spread(rows[t][c])} us")
        if ratios[c]:
            print(f"  {c:<52} ratio this/against {spread(ratios[c], '{:.2f}')}")


if __name__ == "__main__":
    main()
