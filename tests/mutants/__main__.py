"""`python -m tests.mutants`: run the named mutants (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.mutants.catalog import BY_NAME, MUTANTS
from tests.mutants.model import ROOT, Mutant, SnippetError, mutate

SERVICES = ("VIDJOBS_TEST_DATABASE_URL", "VIDJOBS_TEST_KAFKA_BOOTSTRAP")


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # caught, survived, equivalent, caught (equivalent?), error
    seconds: float
    detail: str = ""
    output: str = ""  # the end of pytest's output

    @property
    def bad(self) -> bool:
        return self.status in ("survived", "error")


def tree_files(root: Path) -> list[str]:
    """Tracked and untracked (not ignored) files: the working tree as the developer has it."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({name for name in out.decode().split("\0") if name})


@contextmanager
def scratch_copy(root: Path) -> Iterator[Path]:
    """A copy of the working tree in a temporary directory, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="vidjobs-mutants-"))
    try:
        dest = base / "tree"
        for name in tree_files(root):
            src = root / name
            if not src.is_file():  # deleted but still in the index
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        yield dest
    finally:
        shutil.rmtree(base, ignore_errors=True)


def environment(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "VIDJOBS_REQUIRE_SERVICES": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports(tree: Path) -> None:
    """The scratch copy, not the editable install, is what the tests will import."""
    code = "import jobs, workers, tests; print(jobs.__file__, workers.__file__, tests.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env=environment(tree),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    wrong = [path for path in out if not Path(path).resolve().is_relative_to(tree.resolve())]
    if wrong:
        raise SystemExit(f"the scratch copy is not what Python imports: {wrong}")


def pytest_run(tree: Path, tests: Sequence[str], timeout: float) -> tuple[int | None, str]:
    """Exit code (None on timeout) and the last lines of output."""
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            argv,
            cwd=tree,
            env=environment(tree),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
        return None, (text or "")[-2000:]
    return done.returncode, (done.stdout + done.stderr)[-2000:]


def run_mutant(tree: Path, mutant: Mutant, timeout: float) -> Outcome:
    started = time.monotonic()
    originals = {name: (tree / name).read_text() for name in mutant.files()}
    try:
        for name, text in mutate(tree, mutant).items():
            (tree / name).write_text(text)
        code, tail = pytest_run(tree, mutant.tests, timeout)
    finally:
        for name, text in originals.items():
            (tree / name).write_text(text)
    seconds = time.monotonic() - started
    if code is None:
        return Outcome(mutant, "caught", seconds, f"tests timed out after {timeout:.0f} s", tail)
    if code == 0:
        status = "equivalent" if mutant.equivalent else "survived"
        return Outcome(mutant, status, seconds, tail.strip().splitlines()[-1] if tail else "", tail)
    if code == 1:
        status = "caught (equivalent?)" if mutant.equivalent else "caught"
        failed = [line for line in tail.splitlines() if line.startswith(("FAILED", "ERROR"))]
        return Outcome(mutant, status, seconds, failed[0] if failed else "", tail)
    return Outcome(mutant, "error", seconds, f"pytest exit {code}: {tail[-600:]}", tail)


def table(outcomes: Sequence[Outcome], total: float) -> str:
    name_w = max(len("mutant"), *(len(o.mutant.name) for o in outcomes))
    rule_w = max(len("rule"), *(len(o.mutant.rule) for o in outcomes))
    lines = [
        f"| {'mutant':<{name_w}} | {'rule':<{rule_w}} | result               | seconds |",
        f"|{'-' * (name_w + 2)}|{'-' * (rule_w + 2)}|----------------------|---------|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.mutant.name:<{name_w}} | {o.mutant.rule:<{rule_w}} | {o.status:<20} |"
            f" {o.seconds:7.1f} |"
        )
    caught = sum(o.status.startswith("caught") for o in outcomes)
    lines.append("")
    lines.append(
        f"{len(outcomes)} mutants: {caught} caught, "
        f"{sum(o.status == 'equivalent' for o in outcomes)} equivalent (survived, with a reason), "
        f"{sum(o.status == 'survived' for o in outcomes)} survived, "
        f"{sum(o.status == 'error' for o in outcomes)} errors; total {total:.0f} s"
    )
    return "\n".join(lines)


def check_snippets(mutants: Sequence[Mutant]) -> list[str]:
    problems = []
    for mutant in mutants:
        try:
            mutate(ROOT, mutant)
        except (SnippetError, FileNotFoundError) as exc:
            problems.append(str(exc))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__)
    parser.add_argument("names", nargs="*", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="only check the snippets")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    parser.add_argument("--show", action="store_true", help="print each run's pytest output")
    args = parser.parse_args(argv)

    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown mutants: {', '.join(unknown)} (see --list)")
    chosen = [BY_NAME[n] for n in args.names] if args.names else list(MUTANTS)
    if args.list:
        for mutant in chosen:
            eq = f"  [equivalent: {mutant.equivalent}]" if mutant.equivalent else ""
            print(f"{mutant.name}  ({mutant.rule}; {', '.join(mutant.files())}){eq}")
            for test in mutant.tests:
                print(f"    {test}")
        return 0
    problems = check_snippets(chosen)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"{len(chosen)} mutants: every snippet found exactly once")
        return 0
    missing = [name for name in SERVICES if not os.environ.get(name)]
    if missing:
        print(f'set {", ".join(missing)} (eval "$(cat /work/wt/services.env)")', file=sys.stderr)
        return 2

    started = time.monotonic()
    with scratch_copy(ROOT) as tree:
        check_imports(tree)
        if not args.no_baseline:
            union = sorted({test for mutant in chosen for test in mutant.tests})
            print(f"baseline: {len(union)} test ids on the unmutated copy ...", flush=True)
            code, tail = pytest_run(tree, union, args.timeout * 2)
            if code != 0:
                print(f"the baseline run failed (exit {code}):\n{tail}", file=sys.stderr)
                return 2
            print(f"baseline passed in {time.monotonic() - started:.0f} s", flush=True)
        outcomes = []
        for mutant in chosen:
            outcome = run_mutant(tree, mutant, args.timeout)
            outcomes.append(outcome)
            print(f"{outcome.status:>20}  {mutant.name}  {outcome.seconds:.1f} s", flush=True)
            if outcome.detail:
                print(f"    {outcome.detail}", flush=True)
            if args.show:
                print(outcome.output, flush=True)
    total = time.monotonic() - started
    print()
    print(table(outcomes, total))
    return 1 if any(o.bad for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
