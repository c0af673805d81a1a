"""Fuzzing vauthd's socket (hypothesis): only replies Dovecot can parse, one per request, no crash.

One vauthd runs from its installed launcher for the whole module. Each example is one
connection carrying a mix of well-formed and hostile request lines; the client half-closes and
reads to the end. A small model of the documented protocol says what must come back:
``L`` -> exactly one ``O``/``N``/``F`` line; ``I`` -> ``O<key>\\t<value>`` rows then an empty line,
or one ``F`` line; a valid ``H3`` -> nothing; anything else (another command, another protocol
version, an empty line) -> the connection is closed and nothing after it is answered. An unknown
reply code would crash Dovecot's auth-worker, so nothing else may ever appear. After every
example a plain lookup on a new connection must still be answered, and at the end vauthd must
stop cleanly with no internal error logged.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import build_step_root
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_authpipe_support import STEP, world_dir
from vauthdkit import HELLO, ask, lookup_line

from vmreconcile.install import install_runtime
from vmreconcile.runtime.dovecot.protocol import escape

ME = lookup_line("shared/passdb/me@mydomain.org")
MAX_LINE = 16384  # vauthd's default Limits.max_line


@pytest.fixture(scope="module")
def vauthd() -> Iterator[Path]:
    with world_dir("vmr-vauthd-fuzz-") as top:
        root = top / "root"
        build_step_root(STEP, root)
        install_runtime(top / "bin", root=str(root), libdir=top / "lib", programs=("vauthd",))
        path = top / "vauthd.sock"
        log = top / "vauthd.log"
        with open(log, "wb") as err:
            process = subprocess.Popen(
                [str(top / "bin" / "vauthd"), "--socket", str(path)], stdin=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 15
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        yield path
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        text = log.read_text(errors="replace")
        assert "internal error" not in text and "Traceback" not in text, text


def valid_hello(line: bytes) -> bool:
    fields = line[1:].split(b"\t")
    if len(fields) < 2 or fields[0] != b"3":
        return False
    return not (len(fields) > 4 and bad_escape(fields[4]))


def bad_escape(field: bytes) -> bool:
    index = 0
    while index < len(field):
        if field[index] == 0x01:
            if index + 1 >= len(field) or field[index + 1] not in b"01tnr":
                return True
            index += 2
        else:
            index += 1
    return False


def check_replies(sent: bytes, out: bytes) -> None:
    """Walk the request lines through the protocol model and consume ``out`` accordingly."""
    assert out == b"" or out.endswith(b"\n"), out[-80:]
    replies = out.split(b"\n")[:-1] if out else []
    position = 0

    def next_reply() -> bytes:
        nonlocal position
        assert position < len(replies), f"missing reply for {sent!r}"
        position += 1
        return replies[position - 1]

    for line in sent.split(b"\n")[:-1]:  # a last line without LF is never answered
        command = line[:1]
        if command == b"L" or (command == b"I" and len(line) > MAX_LINE):
            reply = next_reply()
            assert reply[:1] in (b"O", b"N", b"F"), reply
            if reply[:1] == b"N":
                assert reply == b"N"
        elif command == b"I":
            reply = next_reply()
            if reply[:1] == b"F":
                continue
            while reply != b"":
                assert reply[:1] == b"O" and b"\t" in reply, reply
                reply = next_reply()
        elif command == b"H" and len(line) <= MAX_LINE and valid_hello(line):
            continue
        else:  # closed: nothing after this line is answered
            break
    assert position == len(replies), f"unexpected output {replies[position:]!r}"


KEYS = st.one_of(
    st.sampled_from(["passdb", "userdb", "quota", ""]).flatmap(
        lambda kind: st.builds(
            lambda login, local: f"shared/{kind}/{login}{local}",
            st.sampled_from(["me@mydomain.org", "ME:mydomain.org", "vbase1-me", "info@mydomain.org", "x"])
            | st.text(max_size=30),
            st.sampled_from(["", "/", "/127.0.0.1", "/a/b"]),
        )
    ),
    st.text(max_size=40),
)
GOOD_LINES = st.one_of(
    st.builds(
        lambda key, user: b"L" + escape(key.encode("utf-8", "surrogatepass")) + b"\t" + user,
        KEYS,
        st.binary(max_size=10),
    ),
    st.builds(
        lambda flags, rows, path: b"I%d\t%d\t%s\t*" % (flags, rows, escape(path.encode())),
        st.integers(0, 63),
        st.integers(0, 5),
        st.sampled_from(["shared/userdb/", "shared/passdb/", "shared/", "priv/x"]),
    ),
    st.just(b"H3\t2\t0\t\tvmr"),
)
BAD_LINES = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda data: b"L" + data, st.binary(max_size=60)),
    st.builds(lambda data: b"I" + data, st.binary(max_size=60)),
    st.builds(lambda data: b"H" + data, st.binary(max_size=30)),
    st.builds(lambda n: b"L" + b"x" * n, st.sampled_from([MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE])),
)
CONNECTION = st.lists(st.one_of(GOOD_LINES, BAD_LINES).map(lambda line: line.replace(b"\n", b"") + b"\n"), max_size=12)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONNECTION, st.binary(max_size=20))
def test_fuzzed_connections_get_only_parseable_replies(vauthd, lines, tail):
    sent = HELLO + b"".join(lines) + tail.replace(b"\n", b"")
    out = ask(vauthd, sent)
    check_replies(sent, out)
    assert ask(vauthd, HELLO + ME).startswith(b'O{"password":')


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_raw_bytes_before_any_hello(vauthd, data):
    out = ask(vauthd, data)
    check_replies(data, out)
    assert ask(vauthd, HELLO + ME).startswith(b"O")
