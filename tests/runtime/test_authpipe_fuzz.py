"""Fuzzing authpipe's request loop (hypothesis): no traceback, no hang, only documented replies.

Documented behaviour (docs/courier.md): every reply is ``FAIL\\n``, ``OK\\n``, an account block
(``ATTR=value`` lines ending ``.\\n``) or an ENUMERATE listing ending ``.\\n``; the exit status is
0 at end of input, 1 for a stream that cannot be resynchronised, 111 for a temporary failure;
internal errors never happen. Input comes from a file, so end of input is certain (no hang);
a per-example deadline catches a loop that never ends.
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import redirect_stderr

import pytest
from conftest import build_step_root, unrooted_sandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_authpipe_support import DOMAIN, STEP, world_dir

from vmreconcile.host import Host
from vmreconcile.install import install_runtime
from vmreconcile.runtime.courier import authpipe
from vmreconcile.runtime.courier.directory import Directory

ATTRIBUTE = re.compile(rb"[A-Z0-9]+=[^\n]*\n")
ENUM_LINE = re.compile(rb"[^\t\n]*\t\d+\t\d+\t[^\t\n]*\t[^\t\n]*\t[^\t\n]*\n")


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    with world_dir("vmr-authpipe-fuzz-") as top:
        build_step_root(STEP, top / "root")
        yield Host(top / "root")


def run(host: Host, data: bytes) -> tuple[int, bytes, str]:
    err = io.StringIO()
    with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as dst, redirect_stderr(err):
        src.write(data)
        src.seek(0)
        started = time.monotonic()
        code = authpipe.serve(Directory(host, environ={}), src.fileno(), dst.fileno())
        assert time.monotonic() - started < 10, "request loop took too long"
        dst.seek(0)
        return code, dst.read(), err.getvalue()


def split_replies(out: bytes) -> list[bytes]:
    """Cut the output into replies, failing on anything that is not a documented reply."""
    replies = []
    pos = 0
    while pos < len(out):
        for simple in (b"FAIL\n", b"OK\n"):
            if out.startswith(simple, pos):
                replies.append(simple)
                pos += len(simple)
                break
        else:
            end = out.find(b"\n.\n", pos - 1 if pos else 0)
            if out.startswith(b".\n", pos):  # an empty ENUMERATE listing
                replies.append(b".\n")
                pos += 2
                continue
            assert end >= 0, f"unterminated reply at {pos}: {out[pos : pos + 80]!r}"
            block = out[pos : end + 1]
            lines = [line + b"\n" for line in block.split(b"\n")[:-1]]
            assert all(ATTRIBUTE.fullmatch(line) for line in lines) or all(
                ENUM_LINE.fullmatch(line) for line in lines
            ), block
            replies.append(block + b".\n")
            pos = end + 3
    return replies


def check(host: Host, data: bytes) -> tuple[int, list[bytes]]:
    code, out, err = run(host, data)
    assert code in (authpipe.EXIT_EOF, authpipe.EXIT_PROTOCOL, authpipe.EXIT_TEMPORARY)
    assert "internal error" not in err and "Traceback" not in err, err
    return code, split_replies(out)


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
names = st.one_of(
    st.sampled_from(["me", "Me", "info", "dave", "bob", "henry.ford", "nopass", "ghost", "+", "", "vbase1-me"]),
    text.filter(lambda s: "\n" not in s and "\t" not in s),
)
domains = st.sampled_from([DOMAIN, "MyDomain.Org", "sub." + DOMAIN, "localhost", "unknown.example", ""])
logins = st.builds(lambda n, sep, d: f"{n}{sep}{d}", names, st.sampled_from(["@", ":", "", "@@"]), domains)
passwords = st.one_of(st.sampled_from(["secret", "wrong", "*", "", "b0b p@ss:w0rd"]), text)


def _auth(service: str, authtype: str, user: str, password: str) -> bytes:
    body = f"{service}\n{authtype}\n{user}\n{password}\n".encode("utf-8", "surrogateescape")
    return b"AUTH %d\n" % len(body) + body


requests = st.one_of(
    st.builds(lambda s, u: f"PRE . {s} {u}\n".encode(), st.sampled_from(["imap", "pop3", "x y"]), logins),
    st.builds(
        _auth, st.sampled_from(["imap", "pop3"]), st.sampled_from(["login", "cram-md5", "LOGIN", ""]), logins, passwords
    ),
    st.builds(
        lambda u, o, n: f"PASSWD imap\t{u}\t{o}\t{n}\n".encode(),
        logins,
        passwords.filter(lambda s: "\t" not in s and "\n" not in s),
        passwords.filter(lambda s: "\t" not in s and "\n" not in s),
    ),
    st.just(b"ENUMERATE\n"),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b).map(lambda b: b + b"\n"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(requests, max_size=8))
def test_well_framed_requests_get_one_reply_each(host: Host, batch: list[bytes]) -> None:
    well_framed = [r for r in batch if len(r) <= 8192]  # longer lines are a documented protocol error
    code, replies = check(host, b"".join(well_framed))
    if code == authpipe.EXIT_EOF:
        assert len(replies) == len(well_framed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_arbitrary_bytes(host: Host, data: bytes) -> None:
    check(host, data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(requests, min_size=1, max_size=4), st.integers(min_value=0, max_value=400), st.binary(max_size=20))
def test_truncated_and_corrupted_streams(host: Host, batch: list[bytes], cut: int, junk: bytes) -> None:
    data = b"".join(batch)
    check(host, data[:cut] + junk)


def test_launcher_never_prints_a_traceback() -> None:
    """A few hostile streams through the real launcher (-I -S, the copied runtime)."""
    with world_dir("vmr-authpipe-fuzzl-") as top:
        build_step_root(STEP, top / "root")
        install_runtime(top / "bin", root=str(top / "root"), libdir=top / "lib", programs=("authpipe",))
        streams = [
            b"\xff\xfe\x00\n" * 10,
            b"AUTH 5\n\x00\x00\x00\x00\x00PRE . \xff \xff\n",
            b"PASSWD \t\t\t\n" + b"PRE . imap " + b"a" * 8000 + b"\n",
            b"AUTH 8192\n" + b"\n" * 8192 + b"ENUMERATE\n",
            b"PRE . imap me@mydomain.org\nAUTH 40",
        ]
        for data in streams:
            result = subprocess.run([str(top / "bin" / "authpipe")], input=data, capture_output=True, timeout=30)
            assert result.returncode in (0, 1, 111), (data, result)
            assert b"Traceback" not in result.stderr, result.stderr
            split_replies(result.stdout)


@pytest.fixture(scope="module")
def unrooted_host() -> Iterator[Host]:
    """The fixture world without --root: accounts through (a stand-in for) ``pwd``, so the
    test reads none of the machine's accounts, homes or /etc/vmailmgr."""
    with world_dir("vmr-authpipe-fuzzu-") as top:
        build_step_root(STEP, top / "root")
        with unrooted_sandbox(top / "root") as host:
            yield host


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(requests, st.binary(max_size=80)).filter(lambda r: not r.startswith(b"PASSWD")), max_size=6))
def test_unrooted_lookups(unrooted_host: Host, batch: list[bytes]) -> None:
    """The unrooted (``pwd``) path: names with NUL, surrogates or odd bytes never crash it."""
    check(unrooted_host, b"".join(batch))


def test_the_unrooted_sandbox_finds_the_fixture_accounts(unrooted_host: Host) -> None:
    """The fuzzing above reaches real lookups: a correct login succeeds through ``pwd``."""
    code, replies = check(unrooted_host, _auth("imap", "login", f"me@{DOMAIN}", "secret"))
    assert code == authpipe.EXIT_EOF and replies[0].startswith(b"UID=")
