"""The bad-input corpus (tests/data/invalid) and the good one (tests/data/valid).

Each invalid file (or directory of files) carries its exact expected error lines as leading
``# expect:`` comments (and warnings as ``# warn:``); each valid one its exact warnings as
``# warn:`` comments. The checker must report exactly those lines, all at once, and never
raise. ``tests/cli/test_validate_cli.py`` runs the same corpus through the CLI, and checks that
``plan`` and ``apply`` on a ``--root`` tree write nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmreconcile.desired.load import ConfigErrors, check_config, load_spec

DATA = Path(__file__).resolve().parents[1] / "data"
INVALID = sorted(p.name for p in (DATA / "invalid").iterdir())
VALID = sorted(p.name for p in (DATA / "valid").iterdir())


def expectations(entry: Path, prefix: str) -> list[str]:
    files = sorted(entry.glob("*.yaml")) if entry.is_dir() else [entry]
    marker = f"# {prefix}: ".encode()
    return [
        line[len(marker) :].decode("utf-8")
        for f in files
        for line in f.read_bytes().split(b"\n")
        if line.startswith(marker)
    ]


def test_the_invalid_corpus_has_at_least_one_hundred_and_eighty_cases():
    assert len(INVALID) >= 180


@pytest.mark.parametrize("name", INVALID)
def test_invalid_input_reports_exactly_its_expected_errors(name, monkeypatch):
    monkeypatch.chdir(DATA / "invalid")
    expected = expectations(Path(name), "expect")
    assert expected, f"{name} has no '# expect:' line"
    result = check_config(name)
    assert [str(d) for d in result.errors] == expected
    assert [str(d) for d in result.warnings] == expectations(Path(name), "warn")
    assert result.spec is None
    with pytest.raises(ConfigErrors) as caught:
        load_spec(name)
    assert [str(d) for d in caught.value.errors] == expected


@pytest.mark.parametrize("name", VALID)
def test_valid_input_has_no_errors_and_exactly_its_expected_warnings(name, monkeypatch):
    monkeypatch.chdir(DATA / "valid")
    result = check_config(name)
    assert result.errors == []
    assert [str(d) for d in result.warnings] == expectations(Path(name), "warn")
    assert result.spec is not None
    assert load_spec(name) == result.spec


def test_every_error_of_a_file_is_reported_at_once(monkeypatch):
    monkeypatch.chdir(DATA / "invalid")
    result = check_config("many-errors.yaml")
    assert len(result.errors) == 5
    assert len({d.position.line for d in result.errors}) == 5
