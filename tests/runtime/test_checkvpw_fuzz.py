"""Hypothesis fuzzing of checkvpw's fd-3 input: no traceback, no hang, only documented codes.

In-process: `parse_input` and the login core's `read_login_data` (with checkvpw's limit) on arbitrary bytes (many examples, fast). Through
the real launcher as root: arbitrary and login-shaped fd-3 data (fewer examples, each is a
process), where the only allowed exits are 0, 1, 2 and 111, stderr never shows a Python
traceback, and the run ends within the timeout.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loginkit import create_world, destroy_world, run_fd3

from vmreconcile.runtime.login.checkvpw import MAX_INPUT, parse_input
from vmreconcile.runtime.login.core import LoginFailure, read_login_data

DOCUMENTED = {0, 1, 2, 111}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_INPUT))
def test_parse_input_never_crashes(data):
    try:
        name, password = parse_input(data)
    except LoginFailure as failure:
        assert failure.code == 1 and b"\0" not in data
        return
    assert "\0" not in name and "\0" not in password
    assert name == name.translate({c: c + 32 for c in range(65, 91)})  # ASCII-lowercased


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2 * MAX_INPUT))
def test_read_input_limit(data):
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        w = -1
        if len(data) > MAX_INPUT:
            with pytest.raises(LoginFailure) as failure:
                read_login_data(r, MAX_INPUT)
            assert failure.value.code == 2
        else:
            assert read_login_data(r, MAX_INPUT) == data
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# -------------------------------------------------------------------- through the launcher

pytestmark_root = pytest.mark.skipif(os.geteuid() != 0, reason="checkvpw must start as root; CI runs as root")


@pytest.fixture(scope="module")
def world():
    if os.geteuid() != 0:
        pytest.skip("checkvpw must start as root; CI runs as root")
    made = create_world(programs=("checkvpw",))
    yield made
    destroy_world(made)


names = st.sampled_from(["me", "ME", "alice", "info", "dave", "nosuchuser", "", "henry.ford", "+", "root", "a-b-c"])
domains = st.sampled_from(
    ["mydomain.org", "MAIL.mydomain.org", "", "localhost", "unknown.example", ".", "..", "x" * 300]
)
seps = st.sampled_from(["@", ":", "", "@@", "-"])
passwords = st.one_of(st.sampled_from(["secret", "", "*", "alice-pass-2", "dave-plain"]), st.binary(max_size=40))


@st.composite
def login_shaped(draw):
    name = (draw(names) + draw(seps) + draw(domains)).encode()
    password = draw(passwords)
    password = password if isinstance(password, bytes) else password.encode()
    tail = draw(st.sampled_from([b"\0\0", b"\0", b"", b"\0123\0", b"\0\0\0junk"]))
    return name + b"\0" + password + tail


def _check(world, data: bytes) -> None:
    result = run_fd3([world.launcher("checkvpw"), "/bin/true", "Maildir"], data, timeout=20)
    assert result.code in DOCUMENTED, (data, result)
    assert b"Traceback" not in result.stderr and b"internal error" not in result.stderr, result.err


@pytestmark_root
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=MAX_INPUT + 40))
def test_random_fd3_data(world, data):
    _check(world, data)


@pytestmark_root
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=login_shaped())
def test_login_shaped_fd3_data(world, data):
    _check(world, data)
