"""Properties of resolve + diff on generated specs: applying the plan's desired state converges."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.model import HostState
from vmreconcile.plan.build import build_plan
from vmreconcile.plan.diff import diff
from vmreconcile.plan.resolve import passwd_changeable, resolve

NOW = 1_800_000_000
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC.-+", min_size=1, max_size=8).filter(
    lambda n: n not in (".", "..") and not n.startswith(".")
)
limits = st.none() | st.integers(min_value=0, max_value=2**32 - 2)
passwords = st.sampled_from(
    [
        PasswordSpec("hash", "$0$x"),
        PasswordSpec("none"),
        PasswordSpec("unmanaged"),
        PasswordSpec("hash", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"),
    ]
)


@st.composite
def user_specs(draw):
    kind = draw(st.sampled_from(["user", "alias"]))
    return UserSpec(
        name=draw(names),
        kind=kind,
        password=draw(passwords),
        forwards=draw(st.lists(st.sampled_from(["a@b.example", "me", "x@y.example"]), max_size=2).map(tuple)),
        hard_quota=draw(limits),
        personal=draw(st.sampled_from(["", "Some One"])),
        mailbox_enabled=draw(st.booleans()),
    )


@st.composite
def specs(draw):
    users = draw(st.lists(user_specs(), max_size=8, unique_by=lambda u: u.name.lower()))
    return Spec(
        domains=(
            DomainSpec(
                "mydomain.org",
                "myuser",
                wildcard=draw(st.booleans()),
                users=tuple(users),
                prune=draw(st.booleans()),
                catch_all=draw(st.sampled_from([None, "me"])),
            ),
        )
    )


def as_live(state: HostState) -> HostState:
    """What the host looks like after apply wrote ``state`` (every needed maildir exists)."""
    domains = tuple(
        d.with_changes(maildirs=frozenset(u.directory for u in d.users if u.has_mailbox and u.directory))
        for d in state.domains
    )
    return state.with_changes(domains=domains)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=specs(), second=specs())
def test_plan_after_apply_is_empty_and_changes_only_what_differs(first, second):
    live, _ = resolve(first, HostState(control={"rcpthosts": ("localhost",)}), NOW, lambda k, r: None)
    live = as_live(live)
    assert (
        build_plan(
            first, live, now=NOW + 10, secrets=lambda k, r: None, live_changeable=passwd_changeable(first)
        ).changes
        == ()
    )
    plan = build_plan(second, live, now=NOW + 20, secrets=lambda k, r: None, live_changeable=passwd_changeable(first))
    after = as_live(plan.desired)
    assert diff(after, after) == []
    assert (
        build_plan(
            second, after, now=NOW + 30, secrets=lambda k, r: None, live_changeable=passwd_changeable(second)
        ).changes
        == ()
    )
    for change in plan.changes:
        if change.action == "update":
            assert set(change.before) == set(change.after) and all(
                change.before[f] != change.after[f] for f in change.after
            )
