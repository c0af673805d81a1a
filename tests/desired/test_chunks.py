"""`desired.chunks`: a configuration file cut into its domains by lines, and put back."""

from __future__ import annotations

import pytest

from vmreconcile.desired.chunks import reduced, split_config

TEXT = b"""\
version: 1
domains:
  # before the first domain
  a.example:
    base_user: va
    users:
      me: {password: null}

  b.example:
    base_user: vb
# a comment at column 0 inside b
    prune: true
passwords:
  scheme: yescrypt
"""


def test_a_file_is_cut_into_before_domains_and_after():
    split = split_config(TEXT)
    assert split is not None
    assert split.before == b"version: 1\ndomains:\n  # before the first domain\n"
    assert [(c.key, c.line) for c in split.chunks] == [("a.example", 3), ("b.example", 8)]
    assert split.chunks[0].text == b"  a.example:\n    base_user: va\n    users:\n      me: {password: null}\n\n"
    assert split.after == b"passwords:\n  scheme: yescrypt\n"
    assert (split.domains_line, split.after_line, split.indent) == (1, 12, 2)
    assert TEXT.split(b"\n")[split.after_line] == b"passwords:"
    assert split.before + b"".join(c.text for c in split.chunks) + split.after == TEXT


def test_the_last_domain_may_end_the_file_without_a_newline():
    text = b"domains:\n  a.example:\n    base_user: va"
    split = split_config(text)
    assert split is not None and split.after == b""
    assert split.chunks[0].text == b"  a.example:\n    base_user: va"
    assert reduced(split, set()) == b"domains: {}\n#\n#"


def test_reduced_keeps_every_line_number():
    split = split_config(TEXT)
    assert split is not None
    kept = reduced(split, {1})
    assert kept.count(b"\n") == TEXT.count(b"\n")
    assert kept.split(b"\n")[8] == b"  b.example:"
    assert kept.split(b"\n")[3:8] == [b"#"] * 5
    assert reduced(split, set()).split(b"\n")[1] == b"domains: {}"
    assert reduced(split, {0, 1}) == TEXT


@pytest.mark.parametrize(
    "text",
    [
        b"vmailmgr:\n  separators: '@'\n",
        b"domains: {a.example: {base_user: va}}\n",  # flow style: all of it is checked every time
    ],
)
def test_a_file_without_a_domains_line_is_all_before(text):
    split = split_config(text)
    assert split is not None and split.chunks == () and split.domains_span is None and split.before == text


@pytest.mark.parametrize(
    "text",
    [
        b"domains:\n  a.example:\n   \tbase_user: va\n",  # a tab
        b"domains:\r\n  a.example:\r\n    base_user: va\r\n",  # CR LF
        b"domains:\n  a.example:\n    personal: \xc2\x85x\n",  # NEL, a line break to libyaml
        b"domains:\n    a.example:\n  b.example:\n",  # less indented than the first
        b"domains:\n  a.example:\n  - item\n",  # at the domains' indentation but not a key
        b"domains:\n  'a.example':\n",  # a quoted key
        b"domains:\n  a.example:\ndomains:\n  b.example:\n",  # two domains lines
        b"domains:\n",  # nothing after it
        b"domains:\n# only comments\n",
    ],
)
def test_anything_but_the_plain_shape_is_not_cut(text):
    assert split_config(text) is None
