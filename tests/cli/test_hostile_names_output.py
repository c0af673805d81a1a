"""A table key can hold any byte but NUL (a tenant can write its own table): whatever vmreconcile
prints of it, in every output format, reaches the terminal escaped and as valid UTF-8."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.checkout_cli import CLI
from tests.clirunner import cli_runner
from vmreconcile.cli.demo import find_example
from vmreconcile.cli.main import app
from vmreconcile.formats.cdb import CdbReader, build_cdb
from vmreconcile.formats.vpwentry import decode_record, encode_record, user_key
from vmreconcile.model import VirtualUser

HOSTILE = "evil\x1b[31m\x07red\x9b2j\u202e\udcff"
#: What a terminal would act on: C0 but LF, DEL, C1, and the bidirectional override.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path]:
    """A demo root whose table holds a hostile key, and a config that prunes it."""
    tmp = tmp_path_factory.mktemp("hostile")
    root = tmp / "root"
    assert cli_runner().invoke(app, ["demo", str(root)], catch_exceptions=False).exit_code == 0
    (table,) = root.glob("home/*/passwd.cdb")
    users = [decode_record(k, v) for k, v in CdbReader(table.read_bytes()).items()]
    users.append(VirtualUser(name=HOSTILE, directory="./users/evil", forwards=("me",), has_mailbox=False))
    table.write_bytes(build_cdb((user_key(u.name), encode_record(u)) for u in users))
    config = tmp / "mail.yaml"
    config.write_text(
        find_example().read_text().replace("    base_user: myuser\n", "    base_user: myuser\n    prune: true\n")
    )
    return root, config


def run(root: Path, *args: str) -> str:
    done = subprocess.run(
        [str(CLI), "--root", str(root), *args], capture_output=True, env={**os.environ, "ME_PASSWORD": "secret"}
    )
    assert done.returncode in (0, 2), done.stderr
    text = done.stdout.decode("utf-8")  # raises on bytes that are not UTF-8
    assert not RAW.search(text), text
    return text


@pytest.mark.parametrize("view", ["--compact", "--detail"])
def test_the_text_plan_escapes_a_hostile_key(site, view):
    root, config = site
    text = run(root, "plan", str(config), view)
    assert "- alias mydomain.org/evil\\x1b[31m\\x07red\\x9b2j\\u202e\\xff" in text


def test_the_markdown_plan_escapes_a_hostile_key(site):
    root, config = site
    assert "mydomain.org/evil\\x1b[31m\\x07red\\x9b2j\\u202e\\xff" in run(
        root, "plan", str(config), "--format", "markdown"
    )


def test_the_json_plan_is_valid_utf8_and_keeps_the_key_exactly(site):
    root, config = site
    doc = json.loads(run(root, "plan", str(config), "--format", "json"))
    assert [c["address"] for c in doc["changes"]] == [f"mydomain.org/{HOSTILE}"]


def test_show_escapes_a_hostile_key(site):
    root, _ = site
    assert "evil\\x1b[31m\\x07red\\x9b2j\\u202e\\xff No me" in run(root, "show").splitlines()
    names = [u["name"] for d in json.loads(run(root, "show", "--format", "json"))["domains"] for u in d["users"]]
    assert HOSTILE in names
