"""The mutation suite's catalog stays aimed at the code: every snippet is found exactly once
in its file (a refactor that moves code fails here instead of silently disabling a
mutant), every listed test exists, and every invariant and security rule has a mutant."""

from __future__ import annotations

import re

import pytest

from tests.mutants.catalog import MUTANTS
from tests.mutants.model import ROOT, mutate


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_every_snippet_is_found_exactly_once_and_changes_the_code(mutant: object) -> None:
    mutated = mutate(ROOT, mutant)  # type: ignore[arg-type]
    for name, text in mutated.items():
        assert text != (ROOT / name).read_text(), f"{name}: the mutant changes nothing"


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_every_listed_test_exists(mutant: object) -> None:
    assert mutant.tests  # type: ignore[attr-defined]
    for node in mutant.tests:  # type: ignore[attr-defined]
        path, _, rest = node.partition("::")
        assert (ROOT / path).is_file(), f"{node}: no such file"
        if rest:
            func = rest.split("[")[0]
            source = (ROOT / path).read_text()
            assert re.search(rf"^(async )?def {func}\(", source, re.M), f"{node}: no such test"


def test_names_are_unique_and_every_rule_is_covered() -> None:
    names = [mutant.name for mutant in MUTANTS]
    assert len(names) == len(set(names))
    rules = " ".join(mutant.rule for mutant in MUTANTS)
    for n in range(1, 10):  # DESIGN.md invariants 1-9
        assert re.search(rf"inv (\d/)?{n}\b", rules), f"no mutant breaks invariant {n}"
    for word in ("shell", "filter graph", "tenants see", "source roots", "token"):
        assert word in rules, f"no mutant breaks the security rule about {word!r}"
    assert all(m.equivalent is None or len(m.equivalent) > 40 for m in MUTANTS)
