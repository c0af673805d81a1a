"""authpipe's request loop (the long-lived process authdaemond keeps) against a tenant's hostile
table: a hash that would cost minutes, or a table no lookup can finish, is a logged temporary
failure at once, never minutes of CPU as root."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from conftest import build_step_root, never_empty_cdb
from test_authpipe_protocol import serve
from test_authpipe_support import STEP, world_dir

from vmreconcile.formats import cdb
from vmreconcile.formats.cdb import CdbReader, build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.courier import authpipe

COSTLY = "$6$rounds=999999999$abcdefgh$" + "a" * 86


@pytest.fixture
def host() -> Iterator[Host]:
    with world_dir("vmr-authpipe-hostile-") as top:
        build_step_root(STEP, top / "root")
        yield Host(top / "root")


def auth(user: str, password: str) -> bytes:
    body = f"imap\nlogin\n{user}\n{password}\n".encode()
    return b"AUTH %d\n" % len(body) + body


def replace_table(host: Host, data: bytes) -> None:
    path = host.root / "home" / "vbase1" / "passwd.cdb"
    temporary = path.with_name("passwd.cdb.tmp")
    temporary.write_bytes(data)
    os.rename(temporary, path)


def test_a_hash_too_costly_to_check_is_a_logged_temporary_failure(host, capsys):
    path = host.root / "home" / "vbase1" / "passwd.cdb"
    items = list(CdbReader(path.read_bytes()).items())
    costly = VirtualUser(name="costly", password=COSTLY, directory="./users/costly")
    replace_table(host, build_cdb([*items, (user_key("costly"), encode_record(costly))]))
    started = time.monotonic()
    code, out = serve(host, auth("costly@mydomain.org", "anything"))
    assert time.monotonic() - started < 10  # computing it: minutes
    assert (code, out) == (authpipe.EXIT_TEMPORARY, b"")
    err = capsys.readouterr().err
    assert "'costly@mydomain.org': Password hash too costly to check: sha-crypt rounds=999999999" in err
    assert COSTLY not in err


def test_a_table_no_lookup_can_finish_is_a_temporary_failure(host, capsys):
    table_bytes, name = never_empty_cdb(2_000_000)
    replace_table(host, table_bytes)
    started = time.monotonic()
    code, out = serve(host, auth(f"{name}@mydomain.org", "anything"))
    assert time.monotonic() - started < 10
    assert (code, out) == (authpipe.EXIT_TEMPORARY, b"")
    assert (
        f"Cannot read the virtual password table: corrupt cdb: a lookup probed {cdb.MAX_PROBES}"
        in capsys.readouterr().err
    )
