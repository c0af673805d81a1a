"""The pure planner on real fixture states: adoption is a no-op, one edit is one change, hashes masked."""

from __future__ import annotations

import json

import pytest

from tests.conftest import STEPS, build_step_root
from tests.plan.reconcile_helpers import spec_from_state, user_spec
from vmreconcile.desired.spec import PasswordSpec, Spec, UserSpec
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.model import Domain, HostState, VirtualUser
from vmreconcile.plan.build import build_plan
from vmreconcile.plan.changes import mask_password
from vmreconcile.plan.render import render_json, render_markdown, render_text

NOW = 1_800_000_000


def no_secrets(kind: str, ref: str) -> None:
    return None


@pytest.fixture(scope="module")
def step11(tmp_path_factory) -> HostState:
    root = tmp_path_factory.mktemp("step11")
    build_step_root("11-after-deliveries", root)
    return read_live_state(Host(root))


@pytest.mark.parametrize("step", STEPS)
def test_adopting_every_fixture_step_plans_no_changes(step, tmp_path):
    build_step_root(step, tmp_path)
    live = read_live_state(Host(tmp_path))
    plan = build_plan(spec_from_state(live), live, now=NOW, secrets=no_secrets)
    assert plan.changes == ()
    assert render_text(plan).startswith("No changes.")


def edited(live: HostState, name: str, **fields) -> Spec:
    spec = spec_from_state(live)
    domain = spec.domains[0]
    users = tuple(u.with_changes(**fields) if u.name == name else u for u in domain.users)
    from dataclasses import replace

    return replace(spec, domains=(replace(domain, users=users),))


SINGLE_FIELD_EDITS = [
    ("alice", "hard_quota", 2_000_000),
    ("alice", "soft_quota", None),
    ("bob", "message_size_limit", 1),
    ("bob", "message_count_limit", None),
    ("bob", "personal", "Robert"),
    ("bob", "expires", None),
    ("frank", "mailbox_enabled", True),
    ("me", "forwards", ("a@b.example", "alice")),
    ("carol", "created", 1),
    ("carol", "password", PasswordSpec("hash", "$0$carol-new")),
    ("sales", "forwards", ()),
    ("info", "directory", "./users/information"),
]


@pytest.mark.parametrize(("user", "field", "value"), SINGLE_FIELD_EDITS)
def test_each_single_field_edit_is_exactly_one_change(step11, user, field, value):
    plan = build_plan(edited(step11, user, **{field: value}), step11, now=NOW, secrets=no_secrets)
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert (change.action, change.address, change.part) == ("update", f"mydomain.org/{user}", "tables")
    assert list(change.after) == [field]
    assert change.before[field] != change.after[field]


def test_a_directory_change_says_mail_is_not_moved(step11):
    plan = build_plan(edited(step11, "bob", directory="./users/robert"), step11, now=NOW, secrets=no_secrets)
    assert [(c.action, c.type) for c in plan.changes] == [("create", "maildir"), ("update", "user")]
    assert plan.notes == (
        "mydomain.org/bob: directory changes from ./users/bob to ./users/robert; mail is not "
        "moved and the old directory stays",
    )


def test_turning_an_alias_into_a_mailbox_adds_a_maildir_change(step11):
    plan = build_plan(edited(step11, "info", has_mailbox=True), step11, now=NOW, secrets=no_secrets)
    assert [(c.action, c.type, c.address) for c in plan.changes] == [
        ("create", "maildir", "mydomain.org/info/maildir"),
        ("update", "user", "mydomain.org/info"),
    ]


def test_creates_come_before_deletes_and_summary_counts(step11):
    spec = spec_from_state(step11)
    from dataclasses import replace

    domain = spec.domains[0]
    users = tuple(u for u in domain.users if u.name != "sales") + (UserSpec("zed"),)
    plan = build_plan(replace(spec, domains=(replace(domain, users=users),)), step11, now=NOW, secrets=no_secrets)
    kinds = [(c.action, c.type) for c in plan.changes]
    assert kinds == [("create", "maildir"), ("create", "user"), ("delete", "alias")]
    assert plan.summary() == (2, 0, 1)
    assert render_text(plan).rstrip().endswith("Plan: 2 to add, 0 to change, 1 to destroy.")


def test_deleting_a_user_keeps_its_maildir_and_says_where(step11):
    spec = spec_from_state(step11)
    from dataclasses import replace

    domain = spec.domains[0]
    users = tuple(u for u in domain.users if u.name != "bob")
    plan = build_plan(replace(spec, domains=(replace(domain, users=users),)), step11, now=NOW, secrets=no_secrets)
    assert [(c.action, c.type) for c in plan.changes] == [("delete", "user")]
    assert any("./users/bob stays in ~vbase1" in n for n in plan.notes)
    purge = build_plan(
        replace(spec, domains=(replace(domain, users=users),)),
        step11,
        now=NOW,
        secrets=no_secrets,
        purge_mailboxes=True,
    )
    assert [(c.action, c.type) for c in purge.changes] == [("delete", "user"), ("delete", "maildir")]


def test_no_output_format_contains_a_hash(step11):
    spec = spec_from_state(step11, prune=True)
    from dataclasses import replace

    domain = spec.domains[0]
    users = tuple(u for u in domain.users if u.name not in ("me", "alice")) + (
        UserSpec("new", password=PasswordSpec("env", "PW")),
    )
    plan = build_plan(
        replace(spec, domains=(replace(domain, users=users),)), step11, now=NOW, secrets=lambda k, r: "fresh-secret"
    )
    new_hash = plan.desired.domain("mydomain.org").user("new").password
    outputs = render_text(plan) + render_json(plan) + render_markdown(plan)
    for user in step11.domains[0].users:
        if user.password != "*":
            assert user.password not in outputs
    assert new_hash not in outputs and "$y$" not in outputs and "$1$" not in outputs
    assert mask_password(new_hash) in outputs


def test_json_document_has_format_version_and_field_diffs(step11):
    plan = build_plan(edited(step11, "alice", hard_quota=5), step11, now=NOW, secrets=no_secrets)
    doc = json.loads(render_json(plan))
    assert doc["format_version"] == 1
    assert doc["summary"] == {
        "add": 0,
        "change": 1,
        "destroy": 0,
        "by_domain": [{"domain": "mydomain.org", "add": 0, "change": 1, "destroy": 0}],
    }
    assert doc["changes"] == [
        {
            "action": "update",
            "type": "user",
            "address": "mydomain.org/alice",
            "part": "tables",
            "before": {"hard_quota": 1000000},
            "after": {"hard_quota": 5},
        }
    ]
    assert doc["live_checksum"].startswith("sha256:")


def test_markdown_is_a_table_with_a_summary_heading(step11):
    plan = build_plan(edited(step11, "bob", personal="A|B"), step11, now=NOW, secrets=no_secrets)
    text = render_markdown(plan)
    assert text.startswith("### vmreconcile plan: 0 to add, 1 to change, 0 to destroy")
    assert "\n| ~ change | `user mydomain.org/bob` | `personal Bob Builder → A\\|B` |\n" in text


def big_domain(n: int) -> HostState:
    users = tuple(VirtualUser(f"u{i}", directory=f"./users/u{i}") for i in range(n))
    domain = Domain(
        "big.org",
        "big",
        users=users,
        maildirs=frozenset(u.directory for u in users),
        qmail_default="|/usr/local/bin/vdeliver\n",
    )
    return HostState(control={"virtualdomains": ("big.org:big",), "rcpthosts": ("big.org",)}, domains=(domain,))


def prune_to(live: HostState, keep: int) -> Spec:
    spec = spec_from_state(live)
    from dataclasses import replace

    domain = spec.domains[0]
    return replace(spec, domains=(replace(domain, users=domain.users[:keep], options={"postmaster-aliases": ()}),))


@pytest.mark.parametrize(("size", "keep", "trips"), [(10, 7, False), (10, 6, True), (9, 0, False), (100, 69, True)])
def test_safety_brake_trips_above_30_percent_of_ten_or_more(size, keep, trips):
    live = big_domain(size)
    plan = build_plan(prune_to(live, keep), live, now=NOW, secrets=no_secrets)
    assert bool(plan.brake_violations()) is trips


def test_changes_count_towards_the_brake_too():
    live = big_domain(10)
    spec = spec_from_state(live)
    from dataclasses import replace

    domain = spec.domains[0]
    users = tuple(u.with_changes(personal="x") if i < 4 else u for i, u in enumerate(domain.users))
    plan = build_plan(
        replace(spec, domains=(replace(domain, users=users, options={"postmaster-aliases": ()}),)),
        live,
        now=NOW,
        secrets=no_secrets,
    )
    assert plan.brake_violations() == [
        "big.org: 4 of 10 existing users/aliases would be changed or deleted "
        "(more than 30%); use --force if this is intended"
    ]


def test_user_spec_helper_round_trips(step11):
    for user in step11.domains[0].users:
        assert user_spec(user).name == user.name


def test_option_changes_are_addressed_per_domain_and_global():
    domain = Domain(
        "mydomain.org",
        "myuser",
        qmail_default="|/usr/local/bin/vdeliver\n",
        users=tuple(
            VirtualUser(a, directory=f"users/{a}", forwards=("postmaster@",))
            for a in ("mailer-daemon", "postmaster", "root")
        ),
        maildirs=frozenset(f"users/{a}" for a in ("mailer-daemon", "postmaster", "root")),
    )
    live = HostState(
        control={"virtualdomains": ("mydomain.org:myuser",), "rcpthosts": ("mydomain.org",)}, domains=(domain,)
    )
    from vmreconcile.desired.spec import DomainSpec

    spec = Spec(
        options={"default-expiry": "86400"},
        domains=(DomainSpec("mydomain.org", "myuser", options={"user-dir-bits": "4"}),),
    )
    plan = build_plan(spec, live, now=NOW, secrets=no_secrets)
    assert [(c.action, c.type, c.address, c.part) for c in plan.changes] == [
        ("create", "option", "option/default-expiry", "runtime-config"),
        ("create", "option", "option/mydomain.org/user-dir-bits", "runtime-config"),
    ]


def test_a_mailbox_outside_the_home_is_not_planned_as_a_maildir(step11):
    plan = build_plan(edited(step11, "bob", directory="/srv/mail/bob"), step11, now=NOW, secrets=no_secrets)
    assert [(c.action, c.type) for c in plan.changes] == [("update", "user")]
