"""The man pages (man/manpages.py): built from their sources, never drifting from --help or the schema.

Each page must render with ``man --warnings`` silent (as lintian runs it), vmreconcile(1) must
carry every command's and option's text exactly as ``vmreconcile CMD --help`` prints it (compared
with the real command's output, in the interpreter and libraries under test), vmreconcile.yaml(5)
every key of the JSON Schema with its description, and a runtime program without a page source
must stop the build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkout_cli import CLI, REPO
from tests.conftest import load_script
from vmreconcile.install import INSTALLED_PROGRAMS

pytestmark = pytest.mark.skipif(
    not (shutil.which("man") and shutil.which("groff")), reason="needs man-db and groff (Debian: man-db, groff-base)"
)
pytest.importorskip("docutils", reason="the pages are built with docutils (test extra; Debian: python3-docutils)")


manpages = load_script(REPO / "man" / "manpages.py", "vmreconcile_manpages")


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("man")
    return {path.name: path for path in manpages.build(outdir)}


def plain_text(page: Path) -> str:
    """The page as man shows it, without hyphenation or formatting, whitespace collapsed."""
    done = subprocess.run(
        ["groff", "-man", "-Tascii", "-rHY=0", "-rLL=250n", "-P-cbou", str(page)],
        capture_output=True,
        text=True,
        check=True,
    )
    return " ".join(done.stdout.split())


def collapse(text: str) -> str:
    return " ".join(text.split())


def help_output(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    env.pop("VMRECONCILE_ROOT", None)
    done = subprocess.run([str(CLI), *args, "--help"], capture_output=True, text=True, env=env, check=True)
    return done.stdout


def help_entries(text: str) -> list[str]:
    """The entries of the Arguments/Options sections of a --help text, each as one line."""
    entries: list[str] = []
    in_section = False
    for line in text.splitlines():
        if re.match(r"^(Arguments|Options):$", line):
            in_section = True
        elif not line.strip() or not line.startswith(" "):
            in_section = line.startswith(" ") and in_section
        elif in_section:
            if re.match(r"^  \S", line):
                entries.append(line.strip())
            else:
                entries[-1] += " " + line.strip()
    return [collapse(entry) for entry in entries]


def command_names() -> list[str]:
    lines = help_output().split("Commands:\n", 1)[1].splitlines()
    return [line.split()[0] for line in lines if re.match(r"^  \S", line)]


def test_the_build_writes_one_page_per_runtime_program_and_the_two_others(pages):
    expected = {"vmreconcile.1", "vmreconcile.yaml.5", *(f"{program}.8" for program in INSTALLED_PROGRAMS)}
    assert set(pages) == expected


def test_every_page_renders_without_a_warning(pages):
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MAN_DISABLE_SECCOMP": "1"}
    for name, page in pages.items():
        done = subprocess.run(
            ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)], capture_output=True, env=env
        )
        assert done.returncode == 0, (name, done.stderr)
        assert done.stderr == b"", (name, done.stderr.decode())
        assert len(done.stdout) > 500, name


def test_vmreconcile_1_carries_every_command_and_option_as_help_prints_it(pages):
    page = plain_text(pages["vmreconcile.1"])
    commands = command_names()
    assert {"validate", "plan", "apply", "show", "export"} <= set(commands)
    for entry in help_entries(help_output()):
        assert entry in page, f"global option {entry!r} is not in vmreconcile(1)"
    for command in commands:
        text = help_output(command)
        usage = collapse(text.split("\n\n", 1)[0]).removeprefix("Usage: ")
        assert usage in page, f"usage {usage!r} is not in vmreconcile(1)"
        entries = help_entries(text)
        assert entries, command
        for entry in entries:
            assert entry in page, f"{command}: {entry!r} is not in vmreconcile(1)"
        description = text.split("\n\n", 1)[1].split("\nArguments:")[0].split("\nOptions:")[0]
        for paragraph in description.split("\n\n"):
            assert collapse(paragraph) in page, f"{command}: {paragraph!r} is not in vmreconcile(1)"


def test_vmreconcile_1_names_the_page_of_every_runtime_program(pages):
    see_also = plain_text(pages["vmreconcile.1"]).split("SEE ALSO", 1)[1]
    for program in INSTALLED_PROGRAMS:
        assert f"{program}(8)" in see_also


def test_vmreconcile_yaml_5_describes_every_key_of_the_schema(pages):
    page = plain_text(pages["vmreconcile.yaml.5"])
    schema = json.loads((REPO / "schemas" / "vmreconcile.schema.json").read_text())
    described = 0

    def walk(node: object) -> None:
        nonlocal described
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                assert f"{key} {collapse(sub['description'])}" in page, f"key {key!r} is not in vmreconcile.yaml(5)"
                described += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert described > 40


def test_a_runtime_program_without_a_page_source_stops_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(manpages, "runtime_programs", lambda: (*INSTALLED_PROGRAMS, "vfuture"))
    with pytest.raises(manpages.BuildError, match=r"'vfuture'.*man/vfuture\.8\.rst"):
        manpages.build(tmp_path / "out")
    assert not (tmp_path / "out" / "vmreconcile.1").exists()


def test_a_page_source_for_no_runtime_program_stops_the_build(tmp_path, monkeypatch):
    sources = tmp_path / "man"
    shutil.copytree(REPO / "man", sources)
    shutil.copyfile(sources / "checkvpw.8.rst", sources / "vgone.8.rst")
    monkeypatch.setattr(manpages, "MAN_DIR", sources)
    with pytest.raises(manpages.BuildError, match=r"man/vgone\.8\.rst describes no installed runtime program"):
        manpages.page_sources()


def test_the_script_reports_a_broken_source_in_one_line_and_exits_1(tmp_path):
    man = tmp_path / "repo" / "man"
    shutil.copytree(REPO / "man", man)
    (man / "vdeliver.8.rst").unlink()
    (tmp_path / "repo" / "vmreconcile").symlink_to(REPO / "vmreconcile")
    done = subprocess.run(
        [sys.executable, str(man / "manpages.py"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "man/vdeliver.8.rst" in done.stderr, done.stderr


def test_the_same_sources_and_date_give_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    first = {p.name: p.read_bytes() for p in manpages.build(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in manpages.build(tmp_path / "b")}
    assert first == second
    assert b'"2026-01-01"' in first["vmreconcile.1"]
