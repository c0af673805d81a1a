"""Plans people read: values as the YAML writes them, a summary first, one screen by default,
complete with --detail, markdown that fits a GitHub comment, JSON that matches its schema."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import fastjsonschema
import jsonschema
import pytest

from tests.conftest import build_step_root
from tests.plan.reconcile_helpers import spec_from_state
from vmreconcile.desired.load import load_spec
from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.model import HostState
from vmreconcile.plan.build import build_plan
from vmreconcile.plan.changes import Plan
from vmreconcile.plan.render import MARKDOWN_LIMIT, render_json, render_markdown, render_text
from vmreconcile.plan.values import quoted, value_text
from vmreconcile.resources import schema_path

NOW = 1_800_000_000
HASH = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"
GITHUB_COMMENT_LIMIT = 65_536
ONE_SCREEN = 40
PLAN_SCHEMA = json.loads(schema_path("plan.schema.json").read_text())


def no_secrets(kind: str, ref: str) -> None:
    return None


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "spellings", "shown"),
    [
        ("hard_quota", 524_288_000, {}, "500 MiB"),
        ("hard_quota", 1024**3, {1024**3: "1024 MiB"}, "1024 MiB"),  # the unit the YAML used
        ("hard_quota", 1024**3, {}, "1 GiB"),  # else the largest exact unit
        ("message_size_limit", 10_000_000, {}, "10 MB"),
        ("soft_quota", 1_234_567, {}, "1234567"),  # no unit is exact: bytes, as YAML writes them
        ("soft_quota", None, {}, "unlimited"),
        ("message_count_limit", None, {}, "unlimited"),
        ("message_count_limit", 5000, {}, "5000"),
        ("expires", None, {}, "never"),
        ("expires", 1_814_313_600, {}, "2027-06-30"),  # midnight UTC: a date
        ("created", 1_796_184_718, {}, "2026-12-02T04:11:58Z"),
        ("created", 0, {}, "0 (unknown)"),
        ("forwards", ["me@backup.example", "alice"], {}, "[me@backup.example, alice]"),
        ("forwards", [], {}, "[]"),
        ("mailbox_enabled", False, {}, "false"),
        ("personal", "Bob Builder", {}, "Bob Builder"),
        ("personal", "", {}, '""'),
        ("personal", "a: b", {}, '"a: b"'),
        ("personal", "42", {}, '"42"'),  # a string that would read as a number
        ("password", "<yescrypt sha256:0123456789ab>", {}, "<yescrypt sha256:0123456789ab>"),
    ],
)
def test_values_read_as_the_yaml_writes_them(field, value, spellings, shown):
    assert value_text(field, value, spellings=spellings) == shown


@pytest.mark.parametrize(
    ("option", "stored", "shown"),
    [
        ("default-hardquota", "104857600", "100 MiB"),
        ("default-msgsize", "-", "unlimited"),
        ("default-expiry", "86400", "86400"),  # seconds, not a size
        ("default-msgcount", "-", "unlimited"),
        ("separators", "@:", '"@:"'),
        ("postmaster-aliases", ["postmaster", "root"], "[postmaster, root]"),
    ],
)
def test_option_values(option, stored, shown):
    assert value_text("value", stored, option=option) == shown


def test_control_characters_never_reach_the_terminal():
    shown = value_text("personal", "evil\x1b[31m\x07red\x85\x9b2J\u2028")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028]", shown)
    assert shown == quoted("evil\x1b[31m\x07red\x85\x9b2J\u2028")
    assert json.loads(shown) == "evil\x1b[31m\x07red\x85\x9b2J\u2028"


def test_a_plan_spells_sizes_as_the_yaml_did(tmp_path):
    config = tmp_path / "mail.yaml"
    config.write_text(
        "vmailmgr:\n  default-hardquota: 2048kib\n"
        "domains:\n  a.org:\n    base_user: va\n    users:\n"
        "      me: {password: null, hard_quota: 1024 MiB, message_size_limit: 0.5 GiB}\n"
    )
    plan = build_plan(load_spec(config), HostState(), now=NOW, secrets=no_secrets)
    text = render_text(plan)
    assert "+ option/default-hardquota: 2048 KiB\n" in text
    assert "hard_quota 1024 MiB" in text and "message_size_limit 0.5 GiB" in text
    assert "1073741824" not in text and "536870912" not in text
    assert json.loads(render_json(plan))["changes"][0]["after"] == {"value": "2097152"}  # JSON stays raw


# --- the 20,000-user first plan --------------------------------------------------------------


@pytest.fixture(scope="module")
def first_plan_20k(tmp_path_factory) -> Plan:
    """The first plan of a 20,000-user domain, from YAML, passwords from a secret (md5-crypt: cheap)."""
    config = tmp_path_factory.mktemp("big") / "big.yaml"
    users = "".join(f"      u{i:05d}: {{password: {{env: PW}}, hard_quota: 500 MiB}}\n" for i in range(1, 20_000))
    config.write_text(
        "passwords: {scheme: md5-crypt}\n"
        "domains:\n  example.org:\n    base_user: vexample\n    users:\n"
        "      u00000: {password: null, hard_quota: 1 GiB}\n" + users
    )
    return build_plan(load_spec(config), HostState(), now=NOW, secrets=lambda kind, ref: "secret")


def test_the_20000_user_first_plan_fits_on_one_screen_by_default(first_plan_20k):
    plan = first_plan_20k
    assert len(plan.changes) == 40_009
    text = render_text(plan)
    lines = text.splitlines()
    assert len(lines) <= ONE_SCREEN, text
    assert lines[:3] == [
        "Plan: 40,009 to add, 0 to change, 0 to destroy.",
        "  example.org  +40,007 ~0 -0",
        "  (host-wide)  +2 ~0 -0",
    ]
    assert (
        "+ 19,999 users in example.org (u00001 … u19999): password <md5-crypt> (one per entry), "
        "hard_quota 500 MiB, maildir created"
    ) in lines
    assert "+ user example.org/u00000: hard_quota 1 GiB, maildir created" in lines
    assert lines[-1] == lines[0]  # the totals again, right above apply's prompt


def test_the_20000_user_first_plan_is_complete_with_detail(first_plan_20k):
    plan = first_plan_20k
    lines = render_text(plan, view="detail").splitlines()
    headings = [line for line in lines if line[:2] in ("+ ", "~ ", "- ")]
    fields = [line for line in lines if line.startswith("    ")]
    # one heading per change, one line per field of every change, in plan order
    assert len(headings) == len(plan.changes)
    assert [h.rsplit(" ", 1)[-1] for h in headings] == [c.address for c in plan.changes]
    assert len(fields) == sum(len(c.after) for c in plan.changes)
    assert "    hard_quota: 500 MiB" in fields and "    expires: never" in fields
    assert "    created: 2027-01-15T08:00:00Z" in fields
    assert sum(1 for f in fields if f.startswith("    password: <md5-crypt sha256:")) == 19_999


def test_compact_is_one_line_per_change(first_plan_20k):
    plan = first_plan_20k
    lines = render_text(plan, view="compact").splitlines()
    changes = [line for line in lines if line[:2] in ("+ ", "~ ", "- ")]
    assert len(changes) == len(plan.changes)
    assert changes[-1] == "+ control/rcpthosts/example.org: example.org"


def test_a_first_fleet_plan_groups_across_domains():
    users = tuple(UserSpec(f"user{i}", password=PasswordSpec("hash", HASH)) for i in range(10))
    domains = tuple(DomainSpec(f"d{d:03d}.example", f"b{d}", users=users) for d in range(1000))
    plan = build_plan(Spec(domains=domains), HostState(), now=NOW, secrets=no_secrets)
    lines = render_text(plan).splitlines()
    assert len(lines) <= ONE_SCREEN
    assert lines[11] == "  … 990 more domains: +26,730 ~0 -0"  # ten domains, then the rest in one line
    assert lines[14:20] == [
        '+ 1,000 domains (d000.example … d999.example): qmail_default "|/usr/local/bin/vdeliver\\n", users_dir users/',
        "+ 3,000 users in 1,000 domains (d000.example/mailer-daemon … d999.example/root): forwards [postmaster@], "
        "maildir created",
        "+ 10,000 users in 1,000 domains (d000.example/user0 … d999.example/user9): "
        "password <md5-crypt sha256:49b00b87118d>, maildir created",
        "+ 1,000 control lines in control/virtualdomains (d000.example … d999.example)",
        "+ 1,000 control lines in control/rcpthosts (d000.example … d999.example)",
        "(alike changes are grouped: --compact lists every change on one line, --detail every field)",
    ]


# --- markdown of a 100,000-user plan ---------------------------------------------------------


@pytest.fixture(scope="module")
def plan_100k() -> Plan:
    """100,000 new users: half alike (grouped), half each with its own quota (never groupable)."""
    users = tuple(
        UserSpec(f"u{i:06d}", password=PasswordSpec("hash", HASH), hard_quota=(i + 1) * 1024 if i % 2 else 1024**3)
        for i in range(100_000)
    )
    spec = Spec(domains=(DomainSpec("example.org", "vexample", users=users),))
    return build_plan(spec, HostState(), now=NOW, secrets=no_secrets)


@pytest.mark.slow
@pytest.mark.parametrize("view", ["default", "compact", "detail"])
def test_markdown_of_a_100000_user_plan_fits_a_github_comment(plan_100k, view):
    text = render_markdown(plan_100k, view)
    assert len(text) < GITHUB_COMMENT_LIMIT and len(text) <= MARKDOWN_LIMIT
    assert text.startswith("### vmreconcile plan: 200,009 to add, 0 to change, 0 to destroy\n")
    assert "| `example.org` | 200,007 | 0 | 0 |" in text
    shown = sum(1 for line in text.splitlines() if line.startswith("| + add |"))
    assert shown > 100  # the first changes are there ...
    left_out = re.search(r"\*\*([\d,]+) more changes are not shown\*\* \(([\d,]+) more lines\)", text)
    assert left_out, text[-1000:]  # ... and a note says what is not, and how to see it
    assert "`vmreconcile plan --detail`" in text and "`--format json`" in text
    if view == "default":
        assert "| + add | `50,000 users in example.org (u000000 … u099998)` |" in text
    else:
        lines_total = len(plan_100k.changes)
        assert int(left_out[2].replace(",", "")) == lines_total - shown


def test_markdown_that_fits_is_whole_and_escaped(tmp_path):
    root = tmp_path / "root"
    build_step_root("11-after-deliveries", root)
    live = read_live_state(Host(root))
    spec = spec_from_state(live)
    domain = spec.domains[0]
    users = tuple(u.with_changes(personal="x`|<b>y") if u.name == "bob" else u for u in domain.users)
    plan = build_plan(replace(spec, domains=(replace(domain, users=users),)), live, now=NOW, secrets=no_secrets)
    text = render_markdown(plan)
    assert "more changes are not shown" not in text
    assert "| ~ change | `user mydomain.org/bob` | ``personal Bob Builder → x`\\|<b>y`` |" in text


def test_markdown_keeps_to_a_smaller_limit(plan_100k):
    text = render_markdown(plan_100k, "compact", limit=5_000)
    assert len(text) <= 5_000 and "more changes are not shown" in text


# --- JSON ------------------------------------------------------------------------------------


def plans_of_every_kind(tmp_path: Path) -> list[Plan]:
    """Plans with every change type and action: a first plan, edits, deletes with purge, options."""
    root = tmp_path / "root"
    build_step_root("11-after-deliveries", root)
    live = read_live_state(Host(root))
    spec = spec_from_state(live)
    domain = spec.domains[0]
    kept = tuple(u.with_changes(hard_quota=5) if u.name == "alice" else u for u in domain.users if u.name != "bob")
    edited = replace(
        spec,
        options={**spec.options, "default-expiry": "86400"},
        domains=(
            replace(domain, users=kept, options={"postmaster-aliases": ("postmaster",)}, domain_aliases=("x.org",)),
        ),
    )
    first = Spec(
        domains=(DomainSpec("new.org", "vnew", wildcard=True, users=(UserSpec("me"), UserSpec("a", "alias"))),)
    )
    return [
        build_plan(spec, live, now=NOW, secrets=no_secrets),  # no changes
        build_plan(edited, live, now=NOW, secrets=no_secrets, purge_mailboxes=True),
        build_plan(first, HostState(), now=NOW, secrets=no_secrets),
    ]


def test_the_json_plan_matches_its_schema_and_keeps_raw_values(tmp_path):
    validator = jsonschema.Draft202012Validator(PLAN_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(PLAN_SCHEMA)
    kinds = set()
    for plan in plans_of_every_kind(tmp_path):
        doc = json.loads(render_json(plan))
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == []
        kinds |= {(c["action"], c["type"]) for c in doc["changes"]}
        assert sum(d["add"] for d in doc["summary"]["by_domain"]) == doc["summary"]["add"]
    assert {t for _, t in kinds} == {"control_line", "option", "domain", "user", "alias", "maildir"}
    assert {a for a, _ in kinds} == {"create", "update", "delete"}


def test_the_schema_rejects_what_a_plan_never_holds(tmp_path):
    validator = jsonschema.Draft202012Validator(PLAN_SCHEMA)
    doc = json.loads(render_json(plans_of_every_kind(tmp_path)[1]))
    user = next(c for c in doc["changes"] if c["type"] == "user")
    user["after"]["hard_quota"] = "5 KiB"  # JSON keeps raw values
    user["before"]["quota"] = 1
    messages = sorted(e.message for e in validator.iter_errors(doc))
    assert any("'5 KiB' is not of type" in m for m in messages)
    assert any("'quota' was unexpected" in m for m in messages)


def test_the_20000_user_json_plan_matches_its_schema(first_plan_20k):
    doc = json.loads(render_json(first_plan_20k))
    fastjsonschema.compile(PLAN_SCHEMA)(doc)
    first_user = next(c for c in doc["changes"] if c["address"] == "example.org/u00000")
    assert first_user["after"]["hard_quota"] == 1024**3 and first_user["after"]["expires"] is None
