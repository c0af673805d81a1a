"""vauthenticate's request parsing on arbitrary bytes: a request or a bad-data failure (2)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from vmreconcile.runtime.login.core import LoginFailure, read_login_data
from vmreconcile.runtime.login.vauthenticate import MAX_INPUT, parse_request


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_INPUT + 1))
def test_parse_request_total(data):
    try:
        domain, user, password = parse_request(data)
    except LoginFailure as failure:
        assert failure.code == 2
        parts = data.split(b"\0")
        assert len(parts) < 3 or not parts[1] or not parts[2]
        return
    assert user and password and "\0" not in domain + user + password
    assert data.startswith(
        domain.encode("utf-8", "surrogateescape") + b"\0" + user.encode("utf-8", "surrogateescape") + b"\0"
    )


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2 * MAX_INPUT))
def test_read_request_limit(data):
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    try:
        if len(data) > MAX_INPUT:
            try:
                read_login_data(r, MAX_INPUT)
            except LoginFailure as failure:
                assert failure.code == 2
            else:
                raise AssertionError("512 bytes or more must be refused")
        else:
            assert read_login_data(r, MAX_INPUT) == data
    finally:
        os.close(r)
