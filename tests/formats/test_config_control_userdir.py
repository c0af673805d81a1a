"""VMailMgr's option files [compat: options], qmail control files [compat: control-files] and
userdir() [compat: userdir]."""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES
from vmreconcile.formats import control
from vmreconcile.formats.config import (
    LIST,
    OPTIONS,
    STRING,
    UNSIGNED,
    ConfigChain,
    parse_option,
    render_option,
    stored_value,
)
from vmreconcile.formats.userdir import userdir
from vmreconcile.host import read_option_file
from vmreconcile.model import UINT_MAX


def test_there_are_22_options_in_showvconfig_order():
    names = [
        line.split(":")[0]
        for line in (FIXTURES / "environment.txt").read_text().split("showvconfig")[1].splitlines()
        if ": " in line
    ]
    assert list(OPTIONS) == list(dict.fromkeys(names))
    assert len(OPTIONS) == 22


def test_defaults_match_the_oracle_showvconfig(tmp_path):
    chain = ConfigChain([tmp_path / "missing"], read_option_file)
    text = (FIXTURES / "environment.txt").read_text().split("showvconfig", 1)[1]
    for line in text.splitlines():
        if ": " not in line or line.startswith("#"):
            continue
        name, value = line.split(": ", 1)
        got = chain.get(name)
        if isinstance(got, tuple):
            assert value in got
        elif got == UINT_MAX:
            assert value == "-1"
        elif name == "qmail-root":
            continue  # the oracle set /var/qmail explicitly
        else:
            assert str(got) == value, name


@pytest.mark.parametrize(
    "kind, raw, expected",
    [
        (STRING, b"  value  \nignored\n", "value"),
        (STRING, b"\n", None),
        ("dir", b"users", "users/"),
        ("dir", b"users/\n", "users/"),
        (UNSIGNED, b"10abc\n", 10),
        (UNSIGNED, b"-\n", UINT_MAX),
        (UNSIGNED, b"-5", UINT_MAX),
        (UNSIGNED, b"abc", None),
        (LIST, b"a\n\n# comment\n b \n", ("a", "b")),
        (LIST, b"", ()),
    ],
)
def test_option_parsing_follows_section_3_2(kind, raw, expected):
    assert parse_option(kind, raw) == expected


def test_chain_looks_local_then_global_then_default(tmp_path):
    local, global_ = tmp_path / "local", tmp_path / "global"
    local.mkdir()
    global_.mkdir()
    (global_ / "user-dir-bits").write_text("4\n")
    (global_ / "separators").write_text("@\n")
    (local / "separators").write_text("\n")  # empty: move on
    (local / "postmaster-aliases").write_text("")  # empty list: stops here
    chain = ConfigChain([local, global_], read_option_file)
    assert chain.get("user-dir-bits") == 4
    assert chain.get("separators") == "@"
    assert chain.get("postmaster-aliases") == ()
    assert chain.get("user-dir") == "users/"


def test_option_values_round_trip_through_files():
    assert stored_value(render_option("4"), UNSIGNED) == "4"
    assert stored_value(render_option(("a", "b")), LIST) == ("a", "b")


def test_virtualdomains_reading_matches_vmailmgr():
    lines = ("Example.COM:joe", ":catchall", "nocolon", "example.com:later", ".wild.org:w", "x.org:  ")
    mapping = control.virtualdomains_map(lines)
    assert mapping["example.com"] == "later"
    assert control.find_virtual("a.b.wild.org", mapping) == "w"
    assert control.find_virtual("wild.org", mapping) is None
    assert control.find_virtual("EXAMPLE.com", mapping) == "later"
    assert "" not in mapping


def test_locals_are_exact_and_case_sensitive():
    assert control.is_local("localhost", ["localhost  "])
    assert not control.is_local("LOCALHOST", ["localhost"])


def test_edits_keep_every_line_they_do_not_own():
    lines = ("# managed by hand", "other.org:bob", "mydomain.org:old", "MyDomain.org:older")
    edited = control.set_virtualdomain(lines, "mydomain.org", "myuser")
    assert edited == ("# managed by hand", "other.org:bob", "mydomain.org:myuser")
    assert control.remove_virtualdomain(edited, "mydomain.org") == ("# managed by hand", "other.org:bob")
    hosts = ("localhost", "# keep")
    assert control.add_line(hosts, "mydomain.org") == ("localhost", "# keep", "mydomain.org")
    assert control.add_line(("MyDomain.org",), "mydomain.org") == ("MyDomain.org",)
    assert control.remove_line(("a", "b", "a "), "a") == ("b",)
    assert control.render_lines(control.parse_lines(b"a\nb")) == b"a\nb\n"


@pytest.mark.parametrize(
    "name, bits, slices, expected",
    [
        ("c", 6, 1, "users/2f/c"),
        ("joe.smith", 4, 3, "users/1/7/a/joe:smith"),
        ("bob", 10, 2, "users/140/2ec/bob"),
        ("Henry.Ford", 0, 3, "users/Henry:Ford"),
        ("x", 5, 0, "users/x"),
    ],
)
def test_userdir_confirmed_examples(name, bits, slices, expected):
    assert userdir(name, "users/", bits, slices) == expected


def test_the_control_file_registry_names_each_file_once_with_its_rules():
    assert list(control.CONTROL_FILES) == ["rcpthosts", "morercpthosts", "virtualdomains", "locals", "me"]
    assert [f.name for f in control.MANAGED_FILES] == ["virtualdomains", "rcpthosts", "morercpthosts"]
    assert control.RCPTHOSTS_FILES == ("rcpthosts", "morercpthosts")
    after = {f.name: f.after_write for f in control.CONTROL_FILES.values() if f.after_write}
    assert after == {"virtualdomains": control.RELOAD, "morercpthosts": control.NEWMRH}


@pytest.mark.parametrize(
    "shape, line, key",
    [
        (control.MAP, "Example.ORG:base ", "example.org"),
        (control.MAP, ":alias-only", None),
        (control.MAP, "no colon", None),
        (control.HOSTS, "  Example.ORG ", "example.org"),
        (control.HOSTS, "  # a comment", None),
        (control.HOSTS, "", None),
    ],
)
def test_line_keys_follow_the_readers(shape, line, key):
    assert control.line_key(shape, line) == key
