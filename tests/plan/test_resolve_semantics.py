"""resolve(): UNSET keeps live values, new entries get VMailMgr's defaults, passwords, control lines."""

from __future__ import annotations

import pytest

from tests.plan.reconcile_helpers import howto_spec
from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.formats.hashing import verify_password
from vmreconcile.model import Domain, HostState, VirtualUser
from vmreconcile.plan.resolve import ResolveError, SecretUnavailable, passwd_changeable, resolve
from vmreconcile.showjson import redact_hash

NOW = 1_800_000_000
MD5_SECRET = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"  # md5-crypt of "secret" [compat: hashing]


def no_secrets(kind: str, ref: str) -> str | None:
    return None


def secrets_of(values: dict[str, str]):
    return lambda kind, ref: values.get(f"{kind}:{ref}")


def domain_of(state: HostState, name: str = "mydomain.org") -> Domain:
    found = state.domain(name)
    assert found is not None
    return found


def one_domain(*users: UserSpec, **kw) -> Spec:
    return Spec(domains=(DomainSpec("mydomain.org", "myuser", users=users, **kw),))


def test_howto_from_empty_creates_vsetup_aliases_first_then_yaml_order():
    state, notes = resolve(howto_spec(), HostState(), NOW, no_secrets)
    domain = domain_of(state)
    assert [u.name for u in domain.users] == ["mailer-daemon", "postmaster", "root", "me", "myself", "myname", "+"]
    assert notes == []
    assert domain.qmail_default == "|/usr/local/bin/vdeliver\n"


def test_new_user_gets_vadduser_defaults():
    state, _ = resolve(howto_spec(), HostState(), NOW, no_secrets)
    me = domain_of(state).user("me")
    assert me == VirtualUser("me", password=MD5_SECRET, directory="./users/me", created=NOW, has_mailbox=True)


def test_user_aliases_are_shaped_like_vadduser_extra_arguments():
    state, _ = resolve(howto_spec(), HostState(), NOW, no_secrets)
    myself = domain_of(state).user("myself")
    assert myself == VirtualUser("myself", directory="users/myself", forwards=("me",), has_mailbox=False, created=NOW)


def test_catch_all_is_a_vaddalias_entry_named_by_default_username():
    spec = Spec(
        domains=(
            DomainSpec(
                "mydomain.org", "myuser", catch_all="me", options={"default-username": "Catch"}, users=(UserSpec("me"),)
            ),
        )
    )
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    entry = domain_of(state).user("catch")
    assert entry == VirtualUser("catch", directory="./users/Catch", forwards=("me",), has_mailbox=False, created=NOW)


def test_postmaster_aliases_follow_the_options_and_get_a_mailbox():
    spec = one_domain(options={"postmaster-aliases": ("Abuse",), "postmaster-email": "admin@example.net"})
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    assert domain_of(state).users == (
        VirtualUser("abuse", directory="users/abuse", forwards=("admin@example.net",), has_mailbox=True, created=NOW),
    )


def test_alias_kind_is_vaddalias_with_dot_slash_directory():
    spec = one_domain(UserSpec("Support.Team", kind="alias", forwards=("me",)))
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    entry = domain_of(state).user("support.team")
    assert (entry.directory, entry.has_mailbox, entry.forwards, entry.password) == (
        "./users/Support:Team",
        False,
        ("me",),
        "*",
    )


def test_hashed_user_dirs_and_default_limits_come_from_domain_then_global_options():
    spec = Spec(
        options={"default-hardquota": "5000", "default-expiry": "86400"},
        domains=(
            DomainSpec(
                "mydomain.org",
                "myuser",
                users=(UserSpec("bob"),),
                options={"user-dir-bits": "10", "user-dir-slices": "2", "default-msgcount": "7"},
            ),
        ),
    )
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    bob = domain_of(state).user("bob")
    assert bob.directory == "./users/140/2ec/bob"  # [compat: userdir] worked example
    assert (bob.hard_quota, bob.message_count_limit, bob.soft_quota) == (5000, 7, None)
    assert bob.expires == NOW + 86400


def live_with(*users: VirtualUser, maildirs=frozenset(), **kw) -> HostState:
    domain = Domain(
        "mydomain.org",
        "myuser",
        users=users,
        maildirs=frozenset(maildirs),
        qmail_default="|/usr/local/bin/vdeliver\n",
        **kw,
    )
    return HostState(
        control={"virtualdomains": ("mydomain.org:myuser",), "rcpthosts": ("mydomain.org",)}, domains=(domain,)
    )


POSTMASTER = tuple(
    VirtualUser(a, directory=f"users/{a}", forwards=("postmaster@",), created=5)
    for a in ("mailer-daemon", "postmaster", "root")
)


def test_unset_fields_keep_live_values_and_order_is_kept():
    alice = VirtualUser(
        "alice", password=MD5_SECRET, directory="./users/alice", hard_quota=100, created=7, personal="Alice"
    )
    live = live_with(*POSTMASTER, alice)
    spec = one_domain(UserSpec("new"), UserSpec("alice", soft_quota=50))
    state, _ = resolve(spec, live, NOW, no_secrets)
    users = domain_of(state).users
    assert [u.name for u in users] == ["mailer-daemon", "postmaster", "root", "alice", "new"]
    assert users[3] == alice.with_changes(soft_quota=50)


def test_prune_false_keeps_unnamed_entries_and_prune_true_drops_them_but_not_postmaster():
    live = live_with(*POSTMASTER, VirtualUser("old", directory="./users/old"))
    kept, _ = resolve(one_domain(UserSpec("new")), live, NOW, no_secrets)
    assert domain_of(kept).user("old") is not None
    pruned, _ = resolve(one_domain(UserSpec("new"), prune=True), live, NOW, no_secrets)
    assert [u.name for u in domain_of(pruned).users] == ["mailer-daemon", "postmaster", "root", "new"]


def test_missing_postmaster_aliases_are_appended_on_an_existing_domain():
    live = live_with(VirtualUser("me", directory="./users/me"))
    state, _ = resolve(one_domain(), live, NOW, no_secrets)
    assert [u.name for u in domain_of(state).users] == ["me", "mailer-daemon", "postmaster", "root"]


def test_catch_all_none_removes_the_entry_and_unset_leaves_it():
    plus = VirtualUser("+", directory="./users/+", forwards=("me",), has_mailbox=False)
    live = live_with(*POSTMASTER, plus)
    left, _ = resolve(one_domain(), live, NOW, no_secrets)
    assert domain_of(left).user("+") == plus
    gone, _ = resolve(one_domain(catch_all=None), live, NOW, no_secrets)
    assert domain_of(gone).user("+") is None
    pruned, _ = resolve(one_domain(prune=True), live, NOW, no_secrets)
    assert domain_of(pruned).user("+") == plus  # an unmentioned catch-all is left alone, prune or not


class TestPasswords:
    def test_literal_hash_is_stored_as_given(self):
        live = live_with(*POSTMASTER, VirtualUser("me", password=MD5_SECRET, directory="./users/me"))
        state, _ = resolve(one_domain(UserSpec("me", password=PasswordSpec("hash", "$0$x"))), live, NOW, no_secrets)
        assert domain_of(state).user("me").password == "$0$x"

    def test_matching_secret_keeps_the_live_hash(self):
        live = live_with(*POSTMASTER, VirtualUser("me", password=MD5_SECRET, directory="./users/me"))
        spec = one_domain(UserSpec("me", password=PasswordSpec("env", "PW")))
        state, _ = resolve(spec, live, NOW, secrets_of({"env:PW": "secret"}))
        assert domain_of(state).user("me").password == MD5_SECRET

    def test_changed_secret_gets_a_fresh_hash_in_the_configured_scheme(self):
        live = live_with(*POSTMASTER, VirtualUser("me", password=MD5_SECRET, directory="./users/me"))
        spec = Spec(
            password_scheme="sha512-crypt",
            domains=(
                DomainSpec("mydomain.org", "myuser", users=(UserSpec("me", password=PasswordSpec("file", "pw")),)),
            ),
        )
        state, _ = resolve(spec, live, NOW, secrets_of({"file:pw": "new-secret"}))
        stored = domain_of(state).user("me").password
        assert stored.startswith("$6$") and verify_password("new-secret", stored)

    def test_missing_secret_is_an_error_naming_the_user_and_the_variable_or_file(self):
        spec = one_domain(
            UserSpec("me", password=PasswordSpec("env", "TOP_SECRET_VAR")),
            UserSpec("bob", password=PasswordSpec("file", "/run/x")),
        )
        with pytest.raises(ResolveError) as info:
            resolve(spec, HostState(), NOW, no_secrets)
        assert info.value.problems == [
            "mydomain.org/me: password secret {env: TOP_SECRET_VAR} is not available",
            "mydomain.org/bob: password secret {file: /run/x} is not available",
        ]

    def test_an_unusable_secret_says_why_and_never_shows_the_value(self):
        def reader(kind, ref):
            raise SecretUnavailable("more than one line")

        spec = one_domain(UserSpec("me", password=PasswordSpec("file", "/run/x")))
        with pytest.raises(ResolveError) as info:
            resolve(spec, HostState(), NOW, reader)
        assert info.value.problems == ["mydomain.org/me: password secret {file: /run/x}: more than one line"]
        offline_missing = one_domain(UserSpec("me", password=PasswordSpec("env", "GONE")))

        def missing(kind, ref):
            raise SecretUnavailable("not set", missing=True)

        _, notes = resolve(offline_missing, HostState(), NOW, missing, offline=True)
        assert any("not available offline" in note for note in notes)
        with pytest.raises(ResolveError):  # present but unusable is an error even offline
            resolve(spec, HostState(), NOW, reader, offline=True)

    def test_unmanaged_keeps_live_and_new_gets_star(self):
        live = live_with(*POSTMASTER, VirtualUser("me", password="$1$changed$byauthpipe", directory="./users/me"))
        spec = one_domain(
            UserSpec("me", password=PasswordSpec("unmanaged")), UserSpec("bob", password=PasswordSpec("unmanaged"))
        )
        state, _ = resolve(spec, live, NOW, no_secrets)
        assert domain_of(state).user("me").password == "$1$changed$byauthpipe"
        assert domain_of(state).user("bob").password == "*"
        assert passwd_changeable(spec) == ("myuser/me", "myuser/bob")

    def test_none_disables_login(self):
        live = live_with(*POSTMASTER, VirtualUser("me", password=MD5_SECRET, directory="./users/me"))
        state, _ = resolve(one_domain(UserSpec("me", password=PasswordSpec("none"))), live, NOW, no_secrets)
        assert domain_of(state).user("me").password == "*"

    def test_redacted_state_matches_literal_hash_by_digest_and_notes_secrets(self):
        live = live_with(
            *POSTMASTER,
            VirtualUser("me", password=redact_hash(MD5_SECRET), directory="./users/me"),
            VirtualUser("bob", password=redact_hash(MD5_SECRET), directory="./users/bob"),
        )
        spec = one_domain(
            UserSpec("me", password=PasswordSpec("hash", MD5_SECRET)),
            UserSpec("bob", password=PasswordSpec("env", "PW")),
        )
        state, notes = resolve(spec, live, NOW, secrets_of({"env:PW": "whatever"}))
        assert domain_of(state).user("me").password == redact_hash(MD5_SECRET)
        assert domain_of(state).user("bob").password == redact_hash(MD5_SECRET)
        assert notes == [
            "mydomain.org/bob: password from a env secret is not verifiable offline (hash redacted); not compared"
        ]
        changed, _ = resolve(
            one_domain(UserSpec("me", password=PasswordSpec("hash", "$0$other"))), live, NOW, no_secrets
        )
        assert domain_of(changed).user("me").password == "$0$other"


class TestControl:
    def test_names_are_added_to_virtualdomains_and_rcpthosts_keeping_other_lines(self):
        live = HostState(
            control={
                "virtualdomains": ("# comment", "other.org:joe"),
                "rcpthosts": ("localhost",),
                "locals": ("localhost",),
            }
        )
        spec = Spec(domains=(DomainSpec("mydomain.org", "myuser", wildcard=True, domain_aliases=("alias.org",)),))
        state, _ = resolve(spec, live, NOW, no_secrets)
        assert state.control["virtualdomains"] == (
            "# comment",
            "other.org:joe",
            "mydomain.org:myuser",
            ".mydomain.org:myuser",
            "alias.org:myuser",
        )
        assert state.control["rcpthosts"] == ("localhost", "mydomain.org", ".mydomain.org", "alias.org")
        assert state.control["locals"] == ("localhost",)
        assert "morercpthosts" not in state.control

    def test_morercpthosts_moves_the_names_out_of_rcpthosts(self):
        live = HostState(control={"virtualdomains": (), "rcpthosts": ("localhost", "mydomain.org")})
        spec = Spec(domains=(DomainSpec("mydomain.org", "myuser", rcpthosts_file="morercpthosts"),))
        state, _ = resolve(spec, live, NOW, no_secrets)
        assert state.control["rcpthosts"] == ("localhost",)
        assert state.control["morercpthosts"] == ("mydomain.org",)

    def test_dropped_wildcard_and_alias_lines_are_removed(self):
        domain = Domain("mydomain.org", "myuser", wildcard=True, domain_aliases=("alias.org",))
        live = HostState(
            control={
                "virtualdomains": ("mydomain.org:myuser", ".mydomain.org:myuser", "alias.org:myuser", "x.org:y"),
                "rcpthosts": ("mydomain.org", ".mydomain.org", "alias.org"),
            },
            domains=(domain,),
        )
        state, _ = resolve(Spec(domains=(DomainSpec("mydomain.org", "myuser"),)), live, NOW, no_secrets)
        assert state.control["virtualdomains"] == ("mydomain.org:myuser", "x.org:y")
        assert state.control["rcpthosts"] == ("mydomain.org",)

    def test_unnamed_domains_are_left_alone(self):
        other = Domain("other.org", "joe", users=(VirtualUser("x"),))
        live = HostState(control={"virtualdomains": ("other.org:joe",)}, domains=(other,))
        state, _ = resolve(one_domain(), live, NOW, no_secrets)
        assert state.domain("other.org") == other


def test_new_entries_with_explicit_creation_times_go_in_creation_order():
    spec = one_domain(
        UserSpec("late", created=300),
        UserSpec("early", created=100),
        UserSpec("plain"),
        UserSpec("tie", created=100),
        options={"postmaster-aliases": ()},
    )
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    assert [u.name for u in domain_of(state).users] == ["early", "tie", "late", "plain"]


def test_aliases_of_a_new_user_share_its_creation_time_but_not_of_an_existing_one():
    spec = one_domain(UserSpec("alice", created=100, aliases=("ali",)), options={"postmaster-aliases": ()})
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    assert [(u.name, u.created) for u in domain_of(state).users] == [("alice", 100), ("ali", 100)]
    live = live_with(VirtualUser("alice", directory="./users/alice", created=100))
    state, _ = resolve(spec, live, NOW, no_secrets)
    assert domain_of(state).user("ali").created == NOW


def test_an_alias_in_vadduser_extra_shape_goes_right_after_its_user():
    """Step 02: `vadduser alice ali` wrote ali right after alice; an export lists it after all users."""
    spec = one_domain(
        UserSpec("alice", created=100),
        UserSpec("bob", created=100),
        UserSpec("ali", kind="alias", forwards=("alice",), directory="users/ali", created=100),
        UserSpec("info", kind="alias", forwards=("alice",), created=100),
        options={"postmaster-aliases": ()},
    )
    state, _ = resolve(spec, HostState(), NOW, no_secrets)
    assert [u.name for u in domain_of(state).users] == ["alice", "ali", "bob", "info"]


def test_renaming_a_domain_keeps_its_table_and_moves_its_control_lines():
    old = Domain("old.org", "myuser", wildcard=True, users=POSTMASTER, qmail_default="|/usr/local/bin/vdeliver\n")
    live = HostState(
        control={
            "virtualdomains": ("old.org:myuser", ".old.org:myuser", "x.org:joe"),
            "rcpthosts": ("localhost", "old.org", ".old.org"),
        },
        domains=(old,),
    )
    state, _ = resolve(Spec(domains=(DomainSpec("new.org", "myuser"),)), live, NOW, no_secrets)
    assert state.control["virtualdomains"] == ("x.org:joe", "new.org:myuser")
    assert state.control["rcpthosts"] == ("localhost", "new.org")
    assert [d.name for d in state.domains] == ["new.org"] and state.domains[0].users == POSTMASTER
