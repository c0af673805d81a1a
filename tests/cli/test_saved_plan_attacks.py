"""A saved plan applies exactly what was shown, or nothing (issue 11).

Each attack of the issue is tried twice: as an attacker without the host's plan key can do it
(the edited file is refused because its signature no longer matches), and, to test the second
line of defence on its own, re-signed with the host's key as if the key had leaked (then apply
still refuses what its recomputation from the desired state and the live host does not give,
and takes the brake's counts from the host). Nothing is written in any of them.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.plan.reconcile_helpers import HOWTO, empty_root, mtimes
from vmreconcile.cli.main import app
from vmreconcile.host import Host
from vmreconcile.plan.planfile import SIGNATURE, canonical
from vmreconcile.plan.plankey import KEY_FILE, plan_key, sign


def run(root: Path, *args: str):
    return cli_runner().invoke(app, ["--root", str(root), *args], env={"ME_PW": "secret"}, catch_exceptions=False)


@pytest.fixture
def saved(tmp_path):
    """A host with the HOWTO applied, then a plan adding bob saved with --out."""
    root = tmp_path / "root"
    empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text("qmail:\n  reload: /bin/true\n" + HOWTO)
    assert run(root, "apply", str(config), "--yes").exit_code == 0
    config.write_text(
        "qmail:\n  reload: /bin/true\n" + HOWTO + "      bob: {password: '$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1'}\n"
    )
    plan_file = tmp_path / "bob.plan"
    made = run(root, "plan", str(config), "--out", str(plan_file))
    assert made.exit_code == 0, made.output
    return root, config, plan_file


def edit(plan_file: Path, change, resign_with: bytes | None = None) -> None:
    doc = json.loads(plan_file.read_text())
    change(doc)
    if resign_with is not None:
        doc[SIGNATURE]["value"] = sign(resign_with, canonical(doc))
    plan_file.write_text(json.dumps(doc))


def refused(root: Path, plan_file: Path, *extra: str) -> str:
    def written() -> dict[str, int]:
        return {p: t for p, t in mtimes(root).items() if not p.startswith(str(root / "run"))}  # the lock

    before = written()
    result = run(root, "apply", "--plan", str(plan_file), "--yes", *extra)
    assert result.exit_code == 1, result.output
    assert written() == before
    return result.stderr


EDITED = "the plan file was changed after it was made, or made on another host"


def add_change(doc: dict) -> None:
    victim = next(c for c in doc["changes"] if c["address"] == "mydomain.org/bob")
    doc["changes"].append({**victim, "action": "delete", "address": "mydomain.org/me", "target": "me"})


def change_hash(doc: dict) -> None:
    for domain in doc["desired"]["domains"]:
        for user in domain["users"]:
            if user["name"] == "bob":
                user["password"] = "$1$evilsalt$00000000000000000000000"


def replace_reload(doc: dict) -> None:
    doc["reload_command"] = "touch /tmp/vmreconcile-pwned"


ATTACKS = {"added change": add_change, "changed hash": change_hash, "replaced reload command": replace_reload}


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_edited_plan_file_is_refused_by_its_signature(saved, attack):
    root, _, plan_file = saved
    edit(plan_file, ATTACKS[attack])
    assert EDITED in refused(root, plan_file)


@pytest.mark.parametrize("attack", ["added change", "changed hash"])
def test_with_a_leaked_key_the_recomputed_changes_still_refuse_the_edit(saved, attack):
    root, _, plan_file = saved
    edit(plan_file, ATTACKS[attack], resign_with=plan_key(Host(root), create=False))
    assert "the changes recorded in this plan are not what its desired state changes on this host now" in refused(
        root, plan_file
    )


def test_the_unedited_plan_applies_exactly_once(saved):
    root, config, plan_file = saved
    applied = run(root, "apply", "--plan", str(plan_file), "--yes")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 2 added, 0 changed, 0 destroyed." in applied.stdout
    assert run(root, "plan", str(config), "--detailed-exitcode").exit_code == 0
    assert "live state changed since this plan was made" in refused(root, plan_file)


def test_raised_entry_counts_do_not_skip_the_brake(tmp_path):
    root = tmp_path / "root"
    empty_root(root)
    many = tmp_path / "many.yaml"
    many.write_text(
        "domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n"
        + "".join(f"      u{i}: {{password: null}}\n" for i in range(12))
    )
    assert run(root, "apply", str(many), "--yes").exit_code == 0
    few = tmp_path / "few.yaml"
    few.write_text(
        many.read_text().replace("    users:\n", "    prune: true\n    users:\n", 1).rsplit("      u6", 1)[0]
    )
    plan_file = tmp_path / "few.plan"
    assert run(root, "plan", str(few), "--out", str(plan_file)).exit_code == 0
    assert "live_entry_counts" not in json.loads(plan_file.read_text())  # the file carries no counts

    def raise_counts(doc: dict) -> None:
        doc["live_entry_counts"] = {"mydomain.org": 1_000_000}

    edit(plan_file, raise_counts)
    assert EDITED in refused(root, plan_file)
    edit(plan_file, lambda doc: None, resign_with=plan_key(Host(root), create=False))
    message = refused(root, plan_file)
    assert "safety brake" in message and "6 of 15" in message  # counted on the host, not in the file
    assert run(root, "apply", "--plan", str(plan_file), "--yes", "--force").exit_code == 0


def test_a_state_plan_can_never_be_applied_even_with_its_offline_flag_flipped(saved, tmp_path):
    root, config, _ = saved
    snapshot = tmp_path / "state.json"
    snapshot.write_text(run(root, "show", "--format", "json", "--redact").stdout)
    review = tmp_path / "review.plan"
    made = run(tmp_path / "elsewhere", "plan", str(config), "--state", str(snapshot), "--out", str(review))
    assert made.exit_code == 0, made.output
    assert SIGNATURE not in json.loads(review.read_text())
    assert "for review only" in refused(root, review)

    def flip(doc: dict) -> None:
        doc["offline"] = False

    edit(review, flip)
    assert "this plan is not signed" in refused(root, review)
    doc = json.loads(review.read_text())  # even signed with the leaked key: the host is not the snapshot
    doc[SIGNATURE] = {"algorithm": "hmac-sha256", "value": sign(plan_key(Host(root), create=False), canonical(doc))}
    review.write_text(json.dumps(doc))
    message = refused(root, review)
    assert "live state changed since this plan was made" in message or "not what its desired state" in message


def test_a_plan_from_another_host_is_refused(saved, tmp_path):
    root, config, plan_file = saved
    other = tmp_path / "other-root"
    empty_root(other)
    assert "there is no plan key on this host, so no plan file was made here" in refused(other, plan_file)
    run(other, "plan", str(config), "--out", str(tmp_path / "unused.plan"))  # the other host makes its key
    assert EDITED in refused(other, plan_file)


def test_the_key_is_private_and_a_loose_one_is_refused(saved):
    root, config, plan_file = saved
    key = Path(Host(root).fspath(KEY_FILE))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and not key.parent.stat().st_mode & 0o022
    assert key.stat().st_uid == os.geteuid()
    key.chmod(0o644)
    assert "the plan key must be owned by uid" in refused(root, plan_file)
    key.chmod(0o600)
    key.parent.chmod(0o777)  # a directory others can write: a new key is not made there
    key.rename(key.with_name("old.key"))
    made = run(root, "plan", str(config), "--out", str(plan_file.with_name("again.plan")))
    assert made.exit_code == 1 and "refusing to keep the plan key there" in made.stderr
    key.parent.chmod(0o755)
    key.with_name("old.key").rename(key)
    assert run(root, "apply", "--plan", str(plan_file), "--yes").exit_code == 0


def test_a_plan_with_domain_errors_is_not_saved(saved, tmp_path):
    root, config, _ = saved
    (root / "home/myuser/.vmailmgr").mkdir()
    os.mkfifo(root / "home/myuser/.vmailmgr/user-dir")
    out = tmp_path / "broken.plan"
    result = run(root, "plan", str(config), "--out", str(out))
    assert result.exit_code == 1
    assert "the plan was not saved" in result.stderr and not out.exists()
