"""What starting a contained child costs the worker: util-linux in front of it (vfork) vs a
preexec_fn (fork), at a worker's resident size.

    .venv/bin/python -m bench.spawn [--rounds 5] [--spawns 30] [--resident-mib 200]

`workers.ffmpeg.run.contained` gives every ffmpeg, keyframe and probe child its rlimits and
parent-death signal either through `setpriv` and `prlimit` exec'd in front of it or in a
preexec_fn. This process first grows to --resident-mib (touched pages, as a worker's heap
is), then each round starts `ffmpeg -version` --spawns times each way, the order alternating
between rounds. "blocked" is the time `subprocess.Popen` holds the caller (the worker's event
loop, for ffmpeg) until the child has exec'd; "to exit" is until the child has ended. Median
per round, then the median and range (min-max) over rounds. Not part of the suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from functools import partial

from bench.stats import load_average, spread
from workers.ffmpeg import find_ffmpeg
from workers.ffmpeg.run import Limits, _apply_rlimits, contained


def one_way(argv: list[str], use_preexec: bool, spawns: int) -> tuple[float, float]:
    """(blocked ms, to-exit ms): medians over `spawns` starts."""
    limits = Limits().rlimits(60)
    command, preexec = contained(argv, limits)
    if use_preexec:
        command, preexec = argv, partial(_apply_rlimits, limits)
    elif preexec is not None:
        raise SystemExit("setpriv and prlimit are not on PATH: only one way to measure")
    blocked, ended = [], []
    for _ in range(spawns):
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
        )
        blocked.append((time.perf_counter() - start) * 1000)
        proc.wait()
        ended.append((time.perf_counter() - start) * 1000)
    return statistics.median(blocked), statistics.median(ended)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spawns", type=int, default=30)
    parser.add_argument("--resident-mib", type=int, default=200)
    args = parser.parse_args()
    heap = [bytearray(1024 * 1024) for _ in range(args.resident_mib)]  # touched: resident
    argv = [find_ffmpeg(), "-hide_banner", "-version"]
    ways = {"util-linux (vfork)": False, "preexec_fn (fork)": True}
    got: dict[str, dict[str, list[float]]] = {w: {"blocked": [], "ended": []} for w in ways}
    for r in range(args.rounds):
        order = list(ways.items()) if r % 2 == 0 else list(reversed(ways.items()))
        for name, use_preexec in order:
            blocked, ended = one_way(argv, use_preexec, args.spawns)
            got[name]["blocked"].append(blocked)
            got[name]["ended"].append(ended)
    print(
        f"starting a contained `ffmpeg -version` from a {args.resident_mib} MiB process: "
        f"{args.rounds} alternated rounds of {args.spawns}; {load_average()}"
    )
    print(f"{'way':<22} {'blocked ms':>22} {'to exit ms':>22}")
    for name, row in got.items():
        print(
            f"{name:<22} {spread(row['blocked'], '{:.2f}'):>22}"
            f" {spread(row['ended'], '{:.1f}'):>22}"
        )
    del heap


if __name__ == "__main__":
    main()
