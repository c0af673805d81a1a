"""The grouping of a plan's changes (plan/overview.py), on its own: pure functions over `Change`s."""

from __future__ import annotations

import pytest

from vmreconcile.plan.changes import Change
from vmreconcile.plan.overview import (
    GROUP_THRESHOLD,
    DomainCount,
    NoteLine,
    PerEntry,
    domain_counts,
    entries,
    group_notes,
    own_directory,
)


def new_user(domain: str, name: str, *, quota: int | None = 524288000, password: str | None = None, **more) -> Change:
    after = {
        "password": password or f"<yescrypt sha256:{name.encode().hex()[-12:]:0>12}>",  # a hash each
        "directory": f"./users/{name}",
        "forwards": [],
        "hard_quota": quota,
        "created": 1_800_000_000,
        **more,
    }
    return Change(
        action="create", type="user", address=f"{domain}/{name}", part="tables", after=after, domain=domain, target=name
    )


def new_maildir(domain: str, name: str) -> Change:
    return Change(
        action="create",
        type="maildir",
        address=f"{domain}/{name}/maildir",
        part="tables",
        after={"directory": f"./users/{name}"},
        domain=domain,
        target=f"./users/{name}",
    )


def users(domain: str, count: int, **kw) -> list[Change]:
    return [new_user(domain, f"u{i:05d}", **kw) for i in range(count)]


def test_changes_that_differ_only_in_their_names_are_one_line_from_the_threshold_on():
    below = entries(users("example.org", GROUP_THRESHOLD - 1))
    assert [e.count for e in below] == [1] * (GROUP_THRESHOLD - 1)
    [group] = entries(users("example.org", GROUP_THRESHOLD))
    assert group.grouped and group.count == GROUP_THRESHOLD and group.changes == GROUP_THRESHOLD
    assert group.names == tuple(f"u{i:05d}" for i in range(GROUP_THRESHOLD))
    assert group.prefix == "example.org/" and group.domains == ("example.org",)
    # what every member has its own of is shown as what they share
    assert group.after["password"] == PerEntry("password", "yescrypt")
    assert group.after["directory"] == PerEntry("directory", "./users/{name}")
    assert group.after["hard_quota"] == 524288000 and group.after["forwards"] == ()


def test_a_real_difference_keeps_changes_apart():
    changes = users("example.org", 6) + [new_user("example.org", f"v{i}", quota=None) for i in range(6)]
    lines = entries(changes)
    assert [(e.count, e.after["hard_quota"]) for e in lines] == [(6, 524288000), (6, None)]
    schemes = users("a.org", 5) + [new_user("a.org", f"w{i}", password=f"<bcrypt sha256:{i:012x}>") for i in range(5)]
    assert [e.after["password"] for e in entries(schemes)] == [
        PerEntry("password", "yescrypt"),
        PerEntry("password", "bcrypt"),
    ]


@pytest.mark.parametrize("password", ["*", "<md5-crypt sha256:49b00b87118d>"])
def test_a_value_every_member_shares_is_shown_as_it_is(password):
    """One literal hash given to every user is one value, not "one per entry"."""
    same = [new_user("a.org", f"u{i}", password=password) for i in range(5)]
    [group] = entries(same)
    assert group.after["password"] == password
    assert group.after["directory"] == PerEntry("directory", "./users/{name}")


def test_a_directory_not_named_after_its_entry_is_a_difference():
    changes = users("a.org", 5) + [new_user("a.org", f"x{i}", directory="./users/shared") for i in range(5)]
    lines = entries(changes)
    assert [e.after["directory"] for e in lines] == [PerEntry("directory", "./users/{name}"), "./users/shared"]


@pytest.mark.parametrize(
    ("directory", "key", "own"),
    [
        ("./users/me", "me", True),
        ("./users/Henry:Ford", "henry.ford", True),  # the name as written, '.' as ':'
        ("users/a/b/me", "me", True),
        ("./users/mee", "me", False),
        ("./users/", "", False),
    ],
)
def test_own_directory(directory, key, own):
    assert own_directory(directory, key) is own


def test_maildirs_are_merged_into_their_users_line_and_counted():
    changes = []
    for i in range(6):
        changes.append(new_maildir("a.org", f"u{i:05d}"))
    changes += users("a.org", 6)
    [group] = entries(changes)
    assert group.with_maildir and group.count == 6 and group.changes == 12
    # one line per change when asked, maildirs included
    one_each = entries(changes, None, merge_maildirs=False)
    assert len(one_each) == 12 and not any(e.grouped or e.with_maildir for e in one_each)


def test_a_maildir_without_its_user_change_stays_a_line_of_its_own():
    lone = new_maildir("a.org", "ghost")
    [line] = entries([lone])
    assert (line.type, line.addresses, line.with_maildir) == ("maildir", ("a.org/ghost/maildir",), False)


def test_a_group_takes_the_place_of_its_first_member():
    odd = new_user("a.org", "zz", quota=1)
    changes = [new_user("a.org", "first"), odd] + users("a.org", 4)
    lines = entries(changes)
    assert [(e.addresses[0], e.count) for e in lines] == [("a.org/first", 5), ("a.org/zz", 1)]


def test_groups_may_span_domains():
    changes = users("a.org", 3) + users("b.org", 3)
    [group] = entries(changes)
    assert group.domains == ("a.org", "b.org") and group.prefix == ""


def test_control_lines_of_one_file_group_whatever_their_value():
    lines = [
        Change(
            action="create",
            type="control_line",
            address=f"control/virtualdomains/d{i}.example",
            part="control",
            after={"line": f"d{i}.example:b{i}"},
            target="virtualdomains",
        )
        for i in range(7)
    ]
    [group] = entries(lines)
    assert group.count == 7 and group.prefix == "control/virtualdomains/"
    assert group.after == {"line": PerEntry("line")}


def test_domain_counts_per_domain_then_host_wide():
    changes = users("b.org", 2) + users("a.org", 1)
    changes.append(Change(action="delete", type="option", address="option/x", part="runtime-config", target="x"))
    changes.append(
        Change(action="update", type="option", address="option/a.org/x", part="runtime-config", domain="a.org")
    )
    assert domain_counts(changes) == [
        DomainCount("a.org", 1, 1, 0),
        DomainCount("b.org", 2, 0, 0),
        DomainCount(None, 0, 0, 1),
    ]
    assert domain_counts([]) == []


def test_notes_that_say_the_same_about_many_entries_are_one_line():
    same = [f"a.org/u{i}: password from a env secret is not verifiable offline" for i in range(5)]
    other = ["a.org/bob: directory changes from ./users/bob to ./users/robert", "a note about nothing in particular"]
    grouped = group_notes([other[0], *same, other[1]])
    assert grouped == [
        NoteLine(other[0]),
        NoteLine("password from a env secret is not verifiable offline", tuple(f"a.org/u{i}" for i in range(5))),
        NoteLine(other[1]),
    ]
    assert group_notes(same[:4]) == [NoteLine(n) for n in same[:4]]
