"""export: live model -> YAML that validates and reads back as the same model.

Two independent checks of every exported entry: (1) rebuilding each entry from the loaded
`Spec` with the documented new-entry defaults (docs/config-format.md) gives the live entry
field for field, so the export omits exactly what the defaults restore; (2) the planner's
``resolve`` of the loaded spec against the same live state gives that live state back.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import STEPS, build_step_root
from vmreconcile.desired.export import ExportError, export_document, export_yaml, scalar
from vmreconcile.desired.load import check_config
from vmreconcile.desired.spec import UNSET, DomainSpec, Spec, UserSpec
from vmreconcile.desired.yamlread import CONTROL_CHARACTERS, read_yaml
from vmreconcile.formats.config import layered_value
from vmreconcile.formats.userdir import userdir
from vmreconcile.host import Host
from vmreconcile.live import read_live_state
from vmreconcile.model import UINT_MAX, Domain, HostState, VirtualUser, ascii_lower

NOW = 1_900_000_000


def rebuild(entry: UserSpec, dspec: DomainSpec, spec: Spec) -> VirtualUser:
    """A new entry as docs/config-format.md says the planner makes it (no live value to keep)."""

    def opt(name):
        return layered_value(name, dspec.options, spec.options)

    def given(field, default):
        value = getattr(entry, field)
        return default if value is UNSET else value

    def limit(name):
        value = opt(name)
        return None if value == UINT_MAX else value

    created = given("created", NOW)
    default_expiry = opt("default-expiry")
    expires = None if default_expiry == UINT_MAX or created + default_expiry >= UINT_MAX else created + default_expiry
    password = "*"
    if entry.password is not UNSET and entry.password.kind == "hash":
        password = entry.password.value
    directory = "./" + userdir(entry.name, opt("user-dir"), opt("user-dir-bits"), opt("user-dir-slices"))
    return VirtualUser(
        name=ascii_lower(entry.name),
        password=password,
        directory=given("directory", directory),
        forwards=tuple(given("forwards", ())),
        personal=given("personal", ""),
        hard_quota=given("hard_quota", limit("default-hardquota")),
        soft_quota=given("soft_quota", limit("default-softquota")),
        message_size_limit=given("message_size_limit", limit("default-msgsize")),
        message_count_limit=given("message_count_limit", limit("default-msgcount")),
        created=created,
        expires=given("expires", expires),
        has_mailbox=given("has_mailbox", entry.kind == "user") and bool(given("directory", directory)),
        mailbox_enabled=given("mailbox_enabled", True),
    )


def user_dir_options(dspec: DomainSpec, spec: Spec) -> tuple:
    return tuple(
        layered_value(n, dspec.options, spec.options) for n in ("user-dir", "user-dir-bits", "user-dir-slices")
    )


def assert_rebuilds(state: HostState, spec: Spec) -> None:
    assert [d.name for d in spec.domains] == [d.name for d in state.domains]
    for live, dspec in zip(state.domains, spec.domains, strict=True):
        assert (dspec.base_user, dspec.wildcard, dspec.domain_aliases) == (
            live.base_user,
            live.wildcard,
            live.domain_aliases,
        )
        assert dict(dspec.options) == dict(live.options)
        rebuilt = {}
        for entry in dspec.users:
            user = rebuilt[ascii_lower(entry.name)] = rebuild(entry, dspec, spec)
            for alias in entry.aliases:  # like `vadduser USER ALIAS...`, in the user's second
                extra = UserSpec(name=alias, kind="alias", forwards=(user.name,), created=user.created)
                directory = userdir(ascii_lower(alias), *user_dir_options(dspec, spec))
                rebuilt[ascii_lower(alias)] = rebuild(extra, dspec, spec).with_changes(directory=directory)
        assert rebuilt == {u.name: u for u in live.users}
    assert dict(spec.options) == dict(state.options)


def export_and_load(state: HostState, tmp_path: Path, domain: str | None = None):
    config = tmp_path / "exported.yaml"
    config.write_text(export_yaml(state, domain), encoding="utf-8")
    result = check_config(config)
    assert result.errors == [], "\n".join(map(str, result.errors))
    return result


@pytest.mark.parametrize("step", STEPS)
def test_export_of_every_fixture_step_validates_and_rebuilds_every_field(step, tmp_path):
    build_step_root(step, tmp_path / "root")
    state = read_live_state(Host(tmp_path / "root"))
    result = export_and_load(state, tmp_path)
    assert {w.message.split(":")[0] for w in result.warnings} <= {  # dave's $0$, grace's `vchattr -Q 0`
        "'$0$' is VMailMgr's null crypt",
        "alias 'info' has no forwards and no mailbox",
        "soft quota 1500000 is above the hard quota 0",
    }
    assert_rebuilds(state, result.spec)
    assert result.spec.bindir == "/usr/local/bin" and result.spec.qmail_root == "/var/qmail"


@pytest.mark.parametrize("step", STEPS)
def test_resolving_the_export_against_its_own_host_changes_nothing(step, tmp_path):
    resolve = pytest.importorskip("vmreconcile.plan.resolve").resolve
    build_step_root(step, tmp_path / "root")
    state = read_live_state(Host(tmp_path / "root"))
    spec = export_and_load(state, tmp_path).spec
    desired, _notes = resolve(spec, state, NOW, lambda kind, ref: None)
    assert desired == state
    fresh, _ = resolve(spec, HostState(options=state.options), NOW, lambda kind, ref: None)
    assert {u.name: u for u in fresh.domains[0].users} == {u.name: u for u in state.domains[0].users}


def test_the_fixture_export_reads_naturally(tmp_path):
    build_step_root("11-after-deliveries", tmp_path / "root")
    doc, notes = export_document(read_live_state(Host(tmp_path / "root")))
    assert notes == []
    domain = doc["domains"]["mydomain.org"]
    assert (domain["base_user"], domain["wildcard"]) == ("vbase1", True)
    assert domain["users"]["Henry.Ford"] == {
        "password": "$1$v40wIsMN$UQTGd51sXaJC1zxEreIAT1",
        "created": "2026-11-24T18:51:56Z",
    }
    assert domain["users"]["root"] == {
        "forwards": ["postmaster@"],
        "directory": "users/root",
        "created": "2026-11-24T18:51:56Z",
    }
    assert domain["users"]["bob"]["expires"] == "2100-01-01"
    assert domain["users"]["alice"]["hard_quota"] == "1 MB"
    assert domain["aliases"]["sales"] == {
        "forwards": ["carol", "bob@elsewhere.example"],
        "created": "2026-11-24T18:52:01Z",
    }
    assert domain["aliases"]["+"] == {"forwards": ["me"], "created": "2026-11-24T18:52:24Z"}
    assert list(domain["users"])[:4] == ["mailer-daemon", "postmaster", "root", "me"]


def test_domain_filter_and_unknown_domain(tmp_path):
    state = HostState(domains=(Domain("a.example", "va"), Domain("b.example", "vb")))
    doc, _ = export_document(state, "b.example")
    assert list(doc["domains"]) == ["b.example"]
    with pytest.raises(ExportError, match="no live domain 'c.example'"):
        export_document(state, "c.example")


def test_control_file_ownership_options_and_qmail_default_are_exported(tmp_path):
    domain = Domain(
        "shop.example",
        "vshop",
        domain_aliases=("shop.example.net",),
        options={"default-msgsize": "10000", "user-dir": "mail", "default-expiry": "-1"},
        qmail_default="|/opt/bin/vdeliver\n",
        users=(VirtualUser("x", directory="./mail/x", created=5, message_size_limit=10000),),
    )
    other = Domain("plain.example", "vplain", qmail_default=None)
    state = HostState(
        options={"qmail-root": "/var/qmail/", "postmaster-aliases": ("root",), "default-msgcount": "-"},
        control={"rcpthosts": ("localhost", "plain.example"), "morercpthosts": ("shop.example", "shop.example.net")},
        domains=(domain, other),
    )
    doc, notes = export_document(state)
    assert doc["runtime"] == {"bindir": "/opt/bin"} and doc["qmail"] == {"root": "/var/qmail"}
    assert doc["vmailmgr"] == {"default-msgcount": "-", "postmaster-aliases": ["root"], "qmail-root": "/var/qmail/"}
    assert doc["domains"]["shop.example"]["rcpthosts_file"] == "morercpthosts"
    assert doc["domains"]["shop.example"]["options"] == {
        "default-expiry": "-1",
        "default-msgsize": 10000,
        "user-dir": "mail",
    }
    assert "rcpthosts_file" not in doc["domains"]["plain.example"]
    assert notes == ["domain plain.example has no .qmail-default; applying writes '|<runtime.bindir>/vdeliver'"]
    spec = export_and_load(state, tmp_path).spec
    assert spec.domains[0].rcpthosts_file == "morercpthosts"
    assert_rebuilds(state, spec)


def test_bytes_that_are_not_utf8_are_left_out_and_named():
    bad = "caf\udce9"
    users = (
        VirtualUser(bad, directory="./users/x"),
        VirtualUser("bob", directory="./users/bob", personal="M\udcfcller", forwards=("x@y.example",)),
    )
    state = HostState(
        options={"separators": "@\udcff"},
        domains=(
            Domain("d.example", "u", users=users, qmail_default="|/usr/local/bin/vdeliver\n"),
            Domain("e\udce9.example", "v"),
        ),
    )
    doc, notes = export_document(state)
    assert list(doc["domains"]) == ["d.example"] and "vmailmgr" not in doc or doc["vmailmgr"] == {}
    assert doc["domains"]["d.example"]["users"]["bob"]["forwards"] == ["x@y.example"]
    assert "personal" not in doc["domains"]["d.example"]["users"]["bob"]
    assert bad not in doc["domains"]["d.example"].get("users", {})
    assert notes == [
        "domain e\\xe9.example: a name that is not UTF-8; left out (plan leaves the domain alone)",
        "vmailmgr option separators: @\\xff is not UTF-8; left out (its file stays)",
        "d.example/caf\\xe9: a name that is not UTF-8; left out (plan leaves the entry as it is, without prune)",
        "d.example/bob: personal M\\xfcller is not UTF-8; left out "
        "(plan keeps the live value; a rebuilt entry would not have it)",
    ]
    assert export_yaml(state).count("\n# lost: ") == 4
    with pytest.raises(ExportError, match="not UTF-8"):
        scalar(bad)


@pytest.mark.parametrize(
    "text",
    [
        "+",
        "yes",
        "No",
        "123",
        "0x1f",
        "null",
        "~",
        "-x",
        "a: b",
        "a #b",
        "#x",
        "x:",
        "'q'",
        '"q"',
        "",
        " lead",
        "trail ",
        "tab\there",
        "new\nline",
        "[x]",
        "{x}",
        "*ref",
        "&anchor",
        "!tag",
        "%p",
        "@at",
        "`tick`",
        "2027-06-30",
        "1.5",
        ".inf",
        "a, b",
        "\u2028",
        "\x85",
        "\ufeff",
        "é",
        "\x7f",
        "\\",
    ],
)
def test_every_scalar_reads_back_as_itself(text):
    for flow in (False, True):
        rendered = scalar(text, flow=flow)
        document = f"k: [{rendered}]\n" if flow else f"{rendered}: {rendered}\n"
        value, problems = read_yaml(document.encode("utf-8"), "t.yaml")
        if CONTROL_CHARACTERS.search(text):  # written faithfully; the reader refuses it, saying where
            assert problems and all("contains the control character" in str(p) for p in problems)
            continue
        assert problems == []
        assert value == ({"k": [text]} if flow else {text: text})


# --- property: any live domain exports to YAML that rebuilds it exactly ---------------------------

NAME_CHARS = string.ascii_lowercase + string.digits + "._-+"
names = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda n: n not in ("postmaster", "root", "mailer-daemon"))
limits = st.one_of(st.none(), st.integers(0, UINT_MAX - 1))
passwords = st.sampled_from(
    [
        "*",
        "!",
        "!$1$x$y",
        "$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/",
        "$0$plain text",
        "$y$j9T$.xuLG97L.5mm1Cb.iaR77ZiN4TFuoV7JnkTG4VcKU7D$dbiJWvXm8aJ3ExDuTVg61rZEyILfD8WLC/enZxR3KZ0",
        "3" + "a" * 32,
        "abcdefghijklm",
    ]
)
forwards = st.lists(
    st.one_of(
        st.sampled_from(["postmaster", "x@example.org", "ops@", "Y@Z.example"]),
        st.from_regex(r"[a-z]{1,6}@[a-z]{1,6}\.example", fullmatch=True),
    ),
    max_size=3,
)
#: Control characters (Cc) are refused by validate, so an export holding them cannot round-trip.
personal = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@st.composite
def live_users(draw, options):
    user_dir = layered_value("user-dir", options)
    bits, slices = layered_value("user-dir-bits", options), layered_value("user-dir-slices", options)
    out, seen = [], set()
    for _ in range(draw(st.integers(0, 6))):
        typed = draw(names.map(lambda n: draw(st.sampled_from([n, n.upper(), n.capitalize()]))))
        key = ascii_lower(typed)
        if key in seen:
            continue
        seen.add(key)
        plain = userdir(typed, user_dir, bits, slices)
        directory = draw(st.sampled_from(["./" + plain, plain, "", "./elsewhere/" + key, "/abs/" + key]))
        out.append(
            VirtualUser(
                name=key,
                password=draw(passwords),
                directory=directory,
                forwards=tuple(draw(forwards)),
                personal=draw(personal),
                hard_quota=draw(limits),
                soft_quota=draw(limits),
                message_size_limit=draw(limits),
                message_count_limit=draw(limits),
                created=draw(st.integers(0, UINT_MAX - 1)),
                expires=draw(limits),
                has_mailbox=bool(directory) and draw(st.booleans()),
                mailbox_enabled=draw(st.booleans()),
            )
        )
    return tuple(out)


option_sets = st.fixed_dictionaries(
    {},
    optional={
        "default-hardquota": st.sampled_from(["100", "-", "104857600"]),
        "default-msgcount": st.sampled_from(["5", "-1"]),
        "default-expiry": st.sampled_from(["86400", "-"]),
        # an absolute user-dir is refused (vmreconcile makes mailboxes only inside the home)
        "user-dir": st.sampled_from(["users", "mail/", "./box/mail/"]),
        "user-dir-bits": st.sampled_from(["4", "6"]),
        "user-dir-slices": st.sampled_from(["1", "2"]),
    },
)


@st.composite
def host_states(draw):
    global_options = draw(option_sets)
    domain_options = draw(option_sets)
    users = draw(live_users({**global_options, **domain_options}))
    domain = Domain(
        "d.example",
        "vbase",
        wildcard=draw(st.booleans()),
        options=domain_options,
        users=users,
        qmail_default="|/usr/local/bin/vdeliver\n",
    )
    return HostState(options=global_options, domains=(domain,))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host_states())
def test_any_live_domain_exports_to_yaml_that_rebuilds_it_exactly(tmp_path, state):
    assert_rebuilds(state, export_and_load(state, tmp_path).spec)


def test_vadduser_extras_are_written_in_their_users_aliases_list(tmp_path):
    made = dict(created=1000, password="*", has_mailbox=False)
    users = (
        VirtualUser(
            "alice",
            password="$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/",
            directory="./users/alice",
            created=1000,
            expires=1000 + 86400,
        ),
        VirtualUser("ali", directory="users/ali", forwards=("alice",), expires=1000 + 86400, **made),
        VirtualUser("al", directory="users/al", forwards=("alice",), expires=1000 + 86400, **made),
        VirtualUser(
            "later", directory="users/later", forwards=("alice",), expires=1000 + 86400, **{**made, "created": 1001}
        ),
        VirtualUser("dotted", directory="./users/dotted", forwards=("alice",), expires=1000 + 86400, **made),
    )
    state = HostState(
        options={"default-expiry": "86400"},
        domains=(Domain("d.example", "vd", users=users, qmail_default="|/usr/local/bin/vdeliver\n"),),
    )
    doc, _ = export_document(state)
    domain = doc["domains"]["d.example"]
    assert list(domain["users"]["alice"]) == ["password", "aliases", "created", "expires"]
    assert domain["users"]["alice"]["aliases"] == ["ali", "al"]
    assert list(domain["aliases"]) == ["later", "dotted"]
    assert domain["aliases"]["dotted"] == {
        "forwards": ["alice"],
        "created": "1970-01-01T00:16:40Z",
        "expires": "1970-01-02T00:16:40Z",
    }
    assert_rebuilds(state, export_and_load(state, tmp_path).spec)


def test_a_trailing_newline_is_quoted_not_lost():
    """Python's ``$`` matches before a final newline: "A\\n" must not be written as plain ``A``."""
    from vmreconcile.desired.export import scalar

    assert scalar("A\n") == '"A\\n"'
    assert scalar("x\n", flow=True) == '"x\\n"'
    assert scalar("plain text") == "plain text"


def test_live_data_validate_refuses_is_named_as_lost_not_an_internal_error():
    from vmreconcile.adopt import adopt_state

    users = (
        VirtualUser("me", password="$1$", directory="./users/me", created=1000),
        VirtualUser("tab", password="*", directory="./users/tab", personal="A\tB", created=1000),
        VirtualUser("a", password="*", directory="", forwards=("b",), has_mailbox=False, created=1000),
        VirtualUser("b", password="*", directory="", forwards=("a",), has_mailbox=False, created=1000),
    )
    state = HostState(domains=(Domain("d.example", "vd", users=users, qmail_default="|/usr/local/bin/vdeliver\n"),))
    adoption = adopt_state(state)
    assert not adoption.exact
    assert adoption.lost == (
        'the export does not validate: domains["d.example"].users.me.password: libxcrypt cannot check a password '
        "against this hash: with these settings its hashes are 26 characters long, this one is 3 (cut short, or "
        "extra characters): no login would ever succeed",
        'the export does not validate: domains["d.example"].users.tab.personal: contains the control character '
        "'\\t': names and values cannot hold control characters (U+0000-U+001F, U+007F-U+009F)",
        "the export does not validate: domains[\"d.example\"].aliases.a.forwards[0]: forward 'b' makes a mail loop: a -> b -> a",
    )
    assert "\n# lost: the export does not validate: " in adoption.text
