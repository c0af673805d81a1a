"""No input makes the loader raise: random documents, random shapes under known keys, random bytes."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmreconcile.desired.load import check_config

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        ["me", "+", "unlimited", "never", "2027-06-30", "1 GiB", "$1$abcdefgh$IvHnD.uhYhhpxAiK9IT/C/", "a@b", "x@"]
    ),
)
KEYS = [
    "qmail",
    "runtime",
    "vmailmgr",
    "passwords",
    "domains",
    "version",
    "root",
    "reload",
    "bindir",
    "scheme",
    "base_user",
    "wildcard",
    "domain_aliases",
    "rcpthosts_file",
    "options",
    "prune",
    "catch_all",
    "users",
    "aliases",
    "password",
    "forwards",
    "directory",
    "has_mailbox",
    "mailbox_enabled",
    "personal",
    "hard_quota",
    "soft_quota",
    "message_size_limit",
    "message_count_limit",
    "created",
    "expires",
    "env",
    "file",
    "me",
    "mydomain.org",
    "default-username",
    "postmaster-aliases",
    "user-dir-bits",
]
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)


def check_text(tmp_path, text: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text)
    result = check_config(path)
    assert (result.spec is None) == bool(result.errors)
    for diagnostic in result.errors + result.warnings:
        assert str(diagnostic).isprintable()  # one line, nothing a terminal would act on


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values)
def test_any_shape_of_document_gives_diagnostics_not_exceptions(tmp_path, doc):
    check_text(tmp_path, yaml.safe_dump(doc, allow_unicode=True).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.sampled_from(["mydomain.org", "a.example"]),
        st.fixed_dictionaries(
            {"base_user": st.sampled_from(["u1", "u2"])},
            optional={
                "users": st.dictionaries(st.sampled_from(["me", "Me", "bob", "+", "a b"]), values, max_size=3),
                "aliases": st.dictionaries(st.sampled_from(["me", "info", "+"]), values, max_size=3),
                "catch_all": values,
                "wildcard": values,
                "options": values,
            },
        ),
    )
)
def test_any_domain_contents_give_diagnostics_not_exceptions(tmp_path, domains):
    check_text(tmp_path, yaml.safe_dump({"domains": domains}, allow_unicode=True).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_give_diagnostics_not_exceptions(tmp_path, raw):
    check_text(tmp_path, b"domains:\n  x.example:\n    base_user: u\n" + raw)
