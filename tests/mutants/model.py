"""What a mutant is: named edits of the source that break one guarantee, and the tests
that must notice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class SnippetError(Exception):
    """A mutant's snippet is not found exactly once in its file: the code moved."""


@dataclass(frozen=True)
class Edit:
    """Replace `snippet` (found exactly once in `file`) by `replacement`."""

    file: str  # relative to the repository root
    snippet: str
    replacement: str

    def apply(self, text: str, mutant: str) -> str:
        found = text.count(self.snippet)
        if found != 1:
            where = "not found" if found == 0 else f"found {found} times"
            raise SnippetError(f"mutant {mutant}: snippet {where} in {self.file}")
        return text.replace(self.snippet, self.replacement)


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str  # the DESIGN.md invariant or security rule it breaks ("inv 5 fencing", "sec ...")
    edits: tuple[Edit, ...]
    # pytest node ids (a file, file::test or file::test[param]) that must fail with it
    tests: tuple[str, ...]
    # Why no test can tell this mutant from the original (None: it must be caught)
    equivalent: str | None = None
    note: str = ""

    def files(self) -> list[str]:
        return sorted({e.file for e in self.edits})


def mutate(root: Path, mutant: Mutant) -> dict[str, str]:
    """The mutated text of every file the mutant touches, under `root` (nothing written).
    Edits of one file apply in order. Raises SnippetError when a snippet is not unique."""
    out: dict[str, str] = {}
    for edit in mutant.edits:
        text = out.get(edit.file)
        if text is None:
            text = (root / edit.file).read_text()
        out[edit.file] = edit.apply(text, mutant.name)
    return out


def m(
    name: str,
    rule: str,
    file: str,
    snippet: str,
    replacement: str,
    *tests: str,
    equivalent: str | None = None,
    more: tuple[Edit, ...] = (),
    note: str = "",
) -> Mutant:
    """A mutant with one edit (and `more` edits), for a compact catalog."""
    return Mutant(
        name,
        rule,
        (Edit(file, snippet, replacement), *more),
        tuple(tests),
        equivalent,
        note,
    )
