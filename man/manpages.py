#!/usr/bin/python3
"""Build vmreconcile's man pages from their reStructuredText sources in this directory.

Usage: python3 man/manpages.py OUTDIR

Writes ``vmreconcile.1``, ``vmreconcile.yaml.5`` and one section 8 page per runtime program.
The parts that would drift are generated, never written by hand: the commands and options of
``vmreconcile(1)`` come from the CLI's own ``--help`` records (the click objects typer builds),
the keys of ``vmreconcile.yaml(5)`` from the descriptions in the JSON Schema, and the list of
section 8 pages from ``vmreconcile.install.INSTALLED_PROGRAMS``: a listed program without a
``man/<program>.8.rst`` (or a source for no listed program) stops the build with one line.

The date in each page is ``SOURCE_DATE_EPOCH`` (set by dpkg-buildpackage from
debian/changelog) so that two builds give the same bytes. It imports the checkout it sits in.
"""

from __future__ import annotations

import json
import os
import string
import sys
import time
from pathlib import Path

MAN_DIR = Path(__file__).resolve().parent
REPO = MAN_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Lines in a source that the builder replaces with generated reStructuredText.
COMMANDS_MARKER = ".. vmreconcile:commands"
GLOBAL_OPTIONS_MARKER = ".. vmreconcile:global-options"
SCHEMA_MARKER = ".. vmreconcile:schema-keys"
RUNTIME_PAGES_MARKER = ".. vmreconcile:runtime-pages"
#: The schema's objects with keys, in page order, and the heading each gets in vmreconcile.yaml(5).
SCHEMA_SECTIONS = (
    ("#", "Top level"),
    ("#/properties/qmail", "qmail"),
    ("#/properties/runtime", "runtime"),
    ("#/properties/passwords", "passwords"),
    ("#/properties/history", "history"),
    ("#/$defs/domain", "domains.NAME"),
    ("#/$defs/user", "domains.NAME.users.NAME"),
    ("#/$defs/alias", "domains.NAME.aliases.NAME (mapping form)"),
    ("#/$defs/password", "password (mapping form)"),
    ("#/$defs/options", "vmailmgr and domains.NAME.options"),
)


class BuildError(Exception):
    """A source is missing or malformed: the message is printed as one line."""


def rst_escape(text: str) -> str:
    """Text as it must appear in reStructuredText to come out literally.

    Every ASCII punctuation character is escaped, not only the markup ones: docutils also
    turns ``file:line:col`` and ``user@example.org`` into links shown as ``<...>``.
    """
    return "".join("\\" + char if char in string.punctuation else char for char in text)


def _definition(term: str, body: str) -> list[str]:
    return [f"**{rst_escape(term)}**", f"    {rst_escape(body) if body else '(no description)'}", ""]


def _paragraphs(help_text: str) -> list[str]:
    """A click help text as reStructuredText paragraphs (click rewraps them the same way)."""
    import inspect

    lines: list[str] = []
    for paragraph in inspect.cleandoc(help_text).split("\n\n"):
        lines += [rst_escape(" ".join(paragraph.split())), ""]
    return lines


def cli_sections() -> tuple[str, str]:
    """The global options and the command reference of vmreconcile(1), from the CLI itself."""
    import typer.main  # click's objects through typer (newer typers carry their own click)

    from vmreconcile.cli.main import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="vmreconcile")
    global_lines: list[str] = []
    for param in group.get_params(root):
        record = param.get_help_record(root)
        if record is not None:
            global_lines += _definition(*record)
    command_lines: list[str] = []
    for name in group.list_commands(root):  # type: ignore[attr-defined]  # a click Group
        command = group.get_command(root, name)  # type: ignore[attr-defined]
        if command is None or command.hidden:
            continue
        context = command.context_class(command, info_name=name, parent=root)
        usage = " ".join(["vmreconcile", name, *command.collect_usage_pieces(context)])
        command_lines += [rst_escape(usage), "-" * len(rst_escape(usage)), ""]
        command_lines += _paragraphs(command.help or "")
        for param in command.get_params(context):
            record = param.get_help_record(context)
            if record is not None:
                command_lines += _definition(*record)
    return "\n".join(global_lines), "\n".join(command_lines)


def schema_section() -> str:
    """Every key of the configuration format with its description, from the JSON Schema."""
    from vmreconcile import resources

    schema = json.loads(resources.schema_path("vmreconcile.schema.json").read_text("utf-8"))
    described = {pointer for pointer, _ in SCHEMA_SECTIONS}
    missing = sorted(set(_objects_with_keys(schema)) - described)
    if missing:
        raise BuildError(f"schema objects with keys that vmreconcile.yaml(5) does not list: {', '.join(missing)}")
    lines: list[str] = []
    for pointer, heading in SCHEMA_SECTIONS:
        node = _resolve(schema, pointer)
        lines += [rst_escape(heading), "-" * len(rst_escape(heading)), ""]
        if pointer != "#" and node.get("description"):
            lines += [rst_escape(node["description"]), ""]
        for key, sub in node["properties"].items():
            lines += _definition(key, sub.get("description", ""))
    return "\n".join(lines)


def _objects_with_keys(node: object, pointer: str = "#"):
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield pointer
        for key, value in node.items():
            if key != "properties":
                yield from _objects_with_keys(value, f"{pointer}/{key}")
            else:
                for name, sub in value.items():
                    yield from _objects_with_keys(sub, f"{pointer}/properties/{name}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects_with_keys(value, f"{pointer}/{index}")


def _resolve(schema: dict, pointer: str) -> dict:
    node = schema
    for part in pointer.split("/")[1:]:
        node = node[part]
    return node


def runtime_programs() -> tuple[str, ...]:
    from vmreconcile.install import INSTALLED_PROGRAMS

    return INSTALLED_PROGRAMS


def page_sources() -> dict[str, Path]:
    """Output file name -> its source; every listed runtime program must have one."""
    sources = {"vmreconcile.1": MAN_DIR / "vmreconcile.1.rst", "vmreconcile.yaml.5": MAN_DIR / "vmreconcile.yaml.5.rst"}
    programs = runtime_programs()
    for program in programs:
        source = MAN_DIR / f"{program}.8.rst"
        if not source.is_file():
            raise BuildError(
                f"runtime program {program!r} (vmreconcile.install.INSTALLED_PROGRAMS) has no man page source "
                f"man/{program}.8.rst: write one"
            )
        sources[f"{program}.8"] = source
    strays = sorted(p.name for p in MAN_DIR.glob("*.8.rst") if p.name.removesuffix(".8.rst") not in programs)
    if strays:
        raise BuildError(f"man/{strays[0]} describes no installed runtime program: remove it or add the program")
    return sources


def build_date() -> str:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def expand(name: str, source: Path, version: str, date: str) -> str:
    """The complete reStructuredText of one page: placeholders and generated sections filled in."""
    text = source.read_text("utf-8")
    for field in (":Manual section:", ":Version: vmreconcile @VERSION@", ":Date: @DATE@"):
        if field not in text:
            raise BuildError(f"{source.relative_to(REPO)} lacks the docinfo field {field!r}")
    text = text.replace("@VERSION@", version).replace("@DATE@", date)
    generated = {}
    if name == "vmreconcile.1":
        generated[GLOBAL_OPTIONS_MARKER], generated[COMMANDS_MARKER] = cli_sections()
        generated[RUNTIME_PAGES_MARKER] = "".join(f"**{rst_escape(p)}**\\(8), " for p in runtime_programs())
    elif name == "vmreconcile.yaml.5":
        generated[SCHEMA_MARKER] = schema_section()
    for marker, content in generated.items():
        if text.count(marker + "\n") != 1:
            raise BuildError(f"{source.relative_to(REPO)} must contain the line {marker!r} exactly once")
        text = text.replace(marker + "\n", content + "\n")
    return text


def render(rst: str, source: Path) -> str:
    """reStructuredText -> roff with docutils' man page writer; any docutils warning is an error."""
    import io

    from docutils.core import publish_string
    from docutils.writers.manpage import Writer

    overrides = {
        "report_level": 2,
        "halt_level": 2,
        "warning_stream": io.StringIO(),  # reported once, below, as one line
        "input_encoding": "utf-8",
        "output_encoding": "unicode",
    }
    try:
        return publish_string(rst, source_path=str(source), writer=Writer(), settings_overrides=overrides)
    except Exception as error:  # docutils raises SystemMessage at halt_level
        first_line = str(error).strip().splitlines()[0].replace(str(MAN_DIR) + "/", "man/")
        raise BuildError(f"{first_line} (after generated sections were filled in)") from None


def build(outdir: Path) -> list[Path]:
    from vmreconcile import __version__

    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    date = build_date()
    for name, source in page_sources().items():
        page = render(expand(name, source, __version__, date), source)
        path = outdir / name
        path.write_text(page, "utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: man/manpages.py OUTDIR\n")
        return 2
    try:
        for path in build(Path(argv[1])):
            print(path)
    except BuildError as error:
        sys.stderr.write(f"man/manpages.py: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
