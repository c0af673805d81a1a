"""The code cites docs/vmailmgr-compat.md, and only it, for VMailMgr's behaviour.

A citation is ``[compat: <slug>]`` (``[compat: a, b]`` cites two); each slug must be the slug
of a ``## <slug> · <title>`` heading of the document, wherever it is cited (the package, the
tests, the benchmarks). The old ``§N.N`` references pointed into
a document outside the repository, so no source file under vmreconcile/ may contain ``§``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOC = REPO / "docs" / "vmailmgr-compat.md"
PACKAGE = REPO / "vmreconcile"
HEADING = re.compile(r"^## (?P<slug>[a-z0-9][a-z0-9-]*) · (?P<title>\S.*)$")
CITATION = re.compile(r"\[compat:\s*(?P<slugs>[^\]]*)\]")


def sections() -> dict[str, str]:
    """slug -> the section's text (up to the next ``## `` heading)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            match = HEADING.match(line)
            assert match, f"heading not in the '## <slug> · <title>' form: {line!r}"
            assert match["slug"] not in found, f"slug {match['slug']!r} used twice"
            current = found[match["slug"]] = []
        elif current is not None:
            current.append(line)
    return {slug: "\n".join(lines).strip() for slug, lines in found.items()}


def python_files(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*.py") if "__pycache__" not in p.parts)


def source_files() -> list[Path]:
    """Everything of ours that could cite the outside document: code, tests, benchmarks, docs."""
    docs = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
    files = python_files(PACKAGE) + python_files(REPO / "tests") + python_files(REPO / "bench") + docs
    return [p for p in files if p not in (Path(__file__).resolve(), DOC)]


def citations(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for match in CITATION.finditer(line):
            out.extend((number, slug.strip()) for slug in match["slugs"].split(","))
    return out


def test_every_section_says_something():
    found = sections()
    assert found, "no '## <slug> · <title>' sections"
    empty = [slug for slug, text in found.items() if len(text) < 200]
    assert not empty, f"sections without content: {empty}"


def test_citations_name_sections_of_the_document():
    """In the package, and in the tests and benchmarks that cite it too."""
    slugs = set(sections())
    cited = 0
    unknown = []
    cited_in = python_files(PACKAGE) + python_files(REPO / "tests") + python_files(REPO / "bench")
    for path in (p for p in cited_in if p != Path(__file__).resolve()):  # this file shows the syntax
        for number, slug in citations(path):
            cited += 1
            if slug not in slugs:
                unknown.append(f"{path.relative_to(REPO)}:{number}: [compat: {slug}]")
    assert not unknown, "citations of sections that do not exist:\n" + "\n".join(unknown)
    assert cited, "the code cites no section at all"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_reference_outside_the_repository(path):
    lines = [f"{number}: {line.strip()}" for number, line in enumerate(path.read_text().splitlines(), 1) if "§" in line]
    assert not lines, f"{path.relative_to(REPO)} still cites '§' sections:\n" + "\n".join(lines)
