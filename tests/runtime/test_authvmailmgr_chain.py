"""The legacy Courier-IMAP authmod chain [compat: courier], replayed by a driver: Debian has no peer for it.

The driver plays courier-imap 1.x's part: it starts our ``authvmailmgr`` launcher as root with
the request on fd 3 and the login program's re-entry point in ``AUTHUSER``/``AUTHARGC``/
``AUTHARGV*``. The next module, the final program and the re-executed login program are small
shell recorders that print what they really got: argv, uid/gid/supplementary groups, cwd, the
``AUTH*``/``MAILDIR``/``USER``/``HOME``/``VUSER*`` environment and, unless authenticated, the
bytes on fd 3. Hooks in ``/etc/vmailmgr`` and ``~base/.vmailmgr`` print their name, uid and
``AUTHVMAILMGR_ERROR`` to stderr, so each transcript shows what ran, as whom and in which order.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_authpipe_support import DOMAIN, Domain, domain

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid to a throwaway base user); CI runs as root"),
]

RECORDER = r"""#!/bin/sh
echo "program=$(basename "$0")"
echo "args=$*"
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
echo "cwd=$(pwd)"
echo "sigign=$(grep SigIgn /proc/self/status | tr -d '[:space:]' | cut -d: -f2)"
env | grep -E '^(AUTHENTICATED|AUTHADDR|AUTHFULLNAME|MAILDIR|USER|HOME|VUSER[A-Z_]*|AUTHVMAILMGR_ERROR|LC_[A-Z]*)=' | LC_ALL=C sort
if [ -z "$AUTHENTICATED" ]; then
  if [ -e /proc/self/fd/3 ]; then printf 'fd3=['; cat <&3; printf ']\n'; else echo "fd3=closed"; fi
fi
"""

HOOK = """#!/bin/sh
echo "hook $(basename "$0") where={where} uid=$(id -u) error=[$AUTHVMAILMGR_ERROR] vuser=[$VUSER]" >&2
exit {code}
"""


def _text(raw: bytes) -> str:
    """Output as text, byte for byte (no newline translation, undecodable bytes kept)."""
    return raw.decode("utf-8", "surrogateescape")


@dataclass
class Chain:
    domain: Domain
    progs: Path

    def hook(self, name: str, where: str = "global", code: int = 0) -> None:
        directory = self.domain.root / "etc" / "vmailmgr" if where == "global" else self.domain.home / ".vmailmgr"
        directory.mkdir(exist_ok=True)
        path = directory / f"authvmailmgr-{name}"
        path.write_text(HOOK.format(where=where, code=code))
        path.chmod(0o755)
        if where != "global":
            os.chown(directory, self.domain.uid, self.domain.gid)
            os.chown(path, self.domain.uid, self.domain.gid)

    def run(
        self,
        request: bytes | None,
        argv: tuple[str, ...] = ("next", "imapd", "Maildir"),
        env: dict[str, str] | None = None,
        relogin: bool = True,
        groups: tuple[int, ...] = (0,),
    ) -> subprocess.CompletedProcess[str]:
        environ = {"PATH": "/usr/bin:/bin"}
        if relogin:
            environ.update(
                {
                    "AUTHUSER": str(self.progs / "imaplogin"),
                    "AUTHARGC": "2",
                    "AUTHARGV0": "imaplogin",
                    "AUTHARGV1": "--again",
                }
            )
        environ.update(env or {})
        args = [str(self.domain.launcher("authvmailmgr"))] + [
            str(self.progs / a) if a in ("next", "imapd", "imaplogin") else a for a in argv
        ]
        if request is not None:  # the request arrives on stdin and is moved to fd 3 by sh
            args = ["/bin/sh", "-c", 'exec "$0" "$@" 3<&0 0</dev/null', *args]
        done = subprocess.run(
            args,
            env=environ,
            input=request if request is not None else b"",
            capture_output=True,
            timeout=30,
            preexec_fn=lambda: os.setgroups(list(groups)),
            cwd="/",
        )
        return subprocess.CompletedProcess(done.args, done.returncode, _text(done.stdout), _text(done.stderr))


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    with domain("vmram", programs=("authvmailmgr",)) as dom:
        progs = dom.bindir.parent / "progs"
        progs.mkdir(mode=0o755)
        for name in ("next", "imapd", "imaplogin"):
            (progs / name).write_text(RECORDER)
            (progs / name).chmod(0o755)
        yield Chain(dom, progs)


@pytest.fixture
def hooks(chain: Chain) -> Iterator[Chain]:
    """Every hook present (global and local), all succeeding; removed afterwards."""
    for name in ("presetuid", "postsetuid", "loginfail", "error"):
        chain.hook(name, "global")
        chain.hook(name, "local")
    yield chain
    for directory in (chain.domain.root / "etc" / "vmailmgr", chain.domain.home / ".vmailmgr"):
        for hook in directory.glob("authvmailmgr-*"):
            hook.unlink()


def login(user: str, password: str, service: str = "imap") -> bytes:
    return f"{service}\nlogin\n{user}\n{password}\n".encode()


def record(output: str) -> dict[str, str]:
    out = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in out:
            out[key] = value
    return out


def test_success_sets_courier_environment_and_execs_next(hooks: Chain) -> None:
    dom = hooks.domain
    result = hooks.run(login(f"me@{DOMAIN}", "secret"), groups=(0, 4, 27))
    assert result.returncode == 0, result.stderr
    got = record(result.stdout)
    assert got["program"] == "next"  # execv(argv[1], argv+1)
    assert got["args"] == f"{hooks.progs / 'imapd'} Maildir"
    assert got["uid"] == str(dom.uid) and got["gid"] == str(dom.gid)
    assert got["groups"] == str(dom.gid)  # root's supplementary groups are gone [compat: differences]
    assert got["cwd"] == str(dom.home)
    assert got["AUTHENTICATED"] == "me" and got["AUTHADDR"] == "me" and got["AUTHFULLNAME"] == ""
    assert got["MAILDIR"] == "./users/me" and got["VUSER"] == "me"
    assert got["USER"] == dom.base and got["HOME"] == str(dom.home)
    assert got["VUSER_CTIME"] == "1795546316" and got["VUSER_EXPIRY"] == "-"
    assert got["VUSER_HAS_MAILBOX"] == "1" and got["VUSER_MAILBOX_ENABLED"] == "1"
    assert "fd3" not in got  # authenticated: the request is not passed on
    assert int(got["sigign"], 16) & (1 << 12) == 0  # SIGPIPE back to default for the IMAP server
    assert "LC_CTYPE" not in got  # Python's locale coercion is not passed on
    hook_lines = [line for line in result.stderr.splitlines() if line.startswith("hook ")]
    assert [h.split(" error=")[0] for h in hook_lines] == [  # fixed [compat: differences]: each hook once
        "hook authvmailmgr-presetuid where=global uid=0",
        f"hook authvmailmgr-postsetuid where=global uid={dom.uid}",
        f"hook authvmailmgr-postsetuid where=local uid={dom.uid}",
    ]
    assert "vuser=[me]" in hook_lines[0]  # VUSER is set before presetuid, as in VMailMgr


def test_name_as_typed_is_kept(chain: Chain) -> None:
    """VMailMgr's confirmed output [compat: courier] for ``Bob@Example.com``: no lowercasing of the user part."""
    result = chain.run(login("Henry.Ford@MyDomain.ORG", "henry-pw"))
    got = record(result.stdout)
    assert result.returncode == 0, result.stderr
    assert got["AUTHADDR"] == "Henry.Ford" and got["AUTHENTICATED"] == "Henry.Ford"
    assert got["VUSER"] == "Henry.Ford" and got["MAILDIR"] == "./users/Henry:Ford"


def test_personal_info_and_limits_exported(chain: Chain) -> None:
    got = record(chain.run(login(f"bob@{DOMAIN}", "b0b p@ss:w0rd")).stdout)
    assert got["VUSER_PERSONAL"] == "Bob Builder" and got["VUSER_EXPIRY"] == "4102444800"
    assert got["VUSER_MSGSIZE"] == "50000" and got["VUSER_MSGCOUNT"] == "200"
    assert got["AUTHFULLNAME"] == ""  # as VMailMgr: authsuccess sets it empty


@pytest.mark.parametrize(
    "user, password, message, after_setuid",
    [
        (f"me@{DOMAIN}", "wrong", "Invalid or incorrect password", True),
        (f"ghost@{DOMAIN}", "secret", "Invalid or unknown virtual user", True),
        (f"info@{DOMAIN}", "*", "Invalid or unknown virtual user", True),  # alias only
        (f"dave@{DOMAIN}", "dave-plain", "Account has expired", True),
        ("me@unknown.example", "secret", "Invalid or unknown base user or domain", False),
    ],
)
def test_failure_reexecs_login_program(
    hooks: Chain, user: str, password: str, message: str, after_setuid: bool
) -> None:
    """Kept from VMailMgr: a virtual user is checked after the setuid, so its failure hooks run as
    the base user (global, then the domain's own), and the login program is re-executed as it."""
    dom = hooks.domain
    result = hooks.run(login(user, password))
    got = record(result.stdout)
    assert got["program"] == "imaplogin" and got["args"] == "--again"  # $AUTHUSER with $AUTHARGV0..1
    assert got["uid"] == (str(dom.uid) if after_setuid else "0")
    assert int(got["sigign"], 16) & (1 << 12) == 0
    assert "AUTHENTICATED" not in got and "MAILDIR" not in got
    fails = [
        line.split(" error=")[0]
        for line in result.stderr.splitlines()
        if line.startswith("hook authvmailmgr-loginfail")
    ]
    if after_setuid:
        assert fails == [
            f"hook authvmailmgr-loginfail where=global uid={dom.uid}",
            f"hook authvmailmgr-loginfail where=local uid={dom.uid}",
        ]
    else:
        assert fails == ["hook authvmailmgr-loginfail where=global uid=0"]
    assert result.stderr.count(f"error=[{message}]") == len(fails)
    assert not any("postsetuid" in line for line in result.stderr.splitlines())


def test_failure_without_authuser_writes_authfailure(chain: Chain) -> None:
    result = chain.run(login(f"me@{DOMAIN}", "wrong"), relogin=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.endswith("AUTHFAILURE\n")


@pytest.mark.parametrize("request_bytes", [b"", None])
def test_empty_or_missing_request_fails(chain: Chain, request_bytes: bytes | None) -> None:
    result = chain.run(request_bytes)
    assert result.returncode == 1 and result.stdout == "" and result.stderr == "AUTHFAILURE\n"


@pytest.mark.parametrize("user, password", [("", "secret"), (f"me@{DOMAIN}", ""), ("m\0e@mydomain.org", "secret")])
def test_empty_user_or_password_fails_completely(chain: Chain, user: str, password: str) -> None:
    got = record(chain.run(login(user, password)).stdout)
    assert got["program"] == "imaplogin"


def test_system_account_is_passed_to_next_module(hooks: Chain) -> None:
    request = login(f"{hooks.domain.base}@unknown.example", "whatever", service="pop3")
    result = hooks.run(request)
    got = record(result.stdout)
    assert got["program"] == "next" and got["uid"] == "0"  # still root: the next module decides
    assert "AUTHENTICATED" not in got
    assert result.stdout.split("fd3=[", 1)[1] == _text(request) + "]\n"  # the request, byte for byte
    assert "hook " not in result.stderr  # nothing ran: not our user


def test_other_auth_types_are_passed_on(hooks: Chain) -> None:
    """Fixed [compat: differences]: CRAM-MD5 goes to the next module instead of failing completely."""
    request = b"imap\ncram-md5\nPDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+\nam9lIDNkYmM4OGYwNjI0Nzc2YTczN2I1\n"
    result = hooks.run(request)
    assert record(result.stdout)["program"] == "next"
    assert result.stdout.split("fd3=[", 1)[1] == _text(request) + "]\n"
    assert "hook " not in result.stderr


def test_already_authenticated_execs_next_at_once(chain: Chain) -> None:
    result = chain.run(login(f"me@{DOMAIN}", "wrong"), env={"AUTHENTICATED": "someone"})
    got = record(result.stdout)
    assert got["program"] == "next" and got["uid"] == "0" and got["AUTHENTICATED"] == "someone"
    assert "MAILDIR" not in got


def test_two_modules_chained(chain: Chain) -> None:
    """``authvmailmgr authvmailmgr imapd``: the second sees AUTHENTICATED and passes through."""
    second = str(chain.domain.launcher("authvmailmgr"))
    lib = chain.domain.bindir.parent / "lib"
    lib.chmod(0o755)  # the second module already runs as the base user, like in a real chain
    try:
        result = chain.run(login(f"carol@{DOMAIN}", "carol-pw"), argv=(second, "imapd", "Maildir"))
    finally:
        lib.chmod(0o700)
    got = record(result.stdout)
    assert result.returncode == 0, result.stderr
    assert got["program"] == "imapd" and got["args"] == "Maildir"
    assert got["AUTHENTICATED"] == "carol" and got["MAILDIR"] == "./users/carol"


def test_failing_postsetuid_hook_fails_completely(chain: Chain) -> None:
    chain.hook("postsetuid", "local", code=3)
    chain.hook("error", "global")
    try:
        result = chain.run(login(f"me@{DOMAIN}", "secret"))
    finally:
        (chain.domain.home / ".vmailmgr" / "authvmailmgr-postsetuid").unlink()
        (chain.domain.root / "etc" / "vmailmgr" / "authvmailmgr-error").unlink()
    got = record(result.stdout)
    assert got["program"] == "imaplogin"
    assert "error=[Execution of postsetuid failed]" in result.stderr


def test_failing_presetuid_hook_stops_before_setuid(chain: Chain) -> None:
    chain.hook("presetuid", "global", code=1)
    try:
        result = chain.run(login(f"me@{DOMAIN}", "secret"))
    finally:
        (chain.domain.root / "etc" / "vmailmgr" / "authvmailmgr-presetuid").unlink()
    got = record(result.stdout)
    assert got["program"] == "imaplogin" and got["uid"] == "0"


def test_oversized_request_fails(chain: Chain) -> None:
    result = chain.run(login(f"me@{DOMAIN}", "x" * 9000), relogin=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "AUTHFAILURE\n")


def test_unparseable_request_runs_error_hook(hooks: Chain) -> None:
    result = hooks.run(b"imap-without-newlines")
    assert record(result.stdout)["program"] == "imaplogin"
    assert "hook authvmailmgr-error where=global uid=0 error=[Invalid authentication request]" in result.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda t, u, p: b"imap\n" + t + b"\n" + u + b"\n" + p + b"\n",
            st.sampled_from([b"login", b"LOGIN", b"cram-md5", b""]),
            st.sampled_from([b"me@mydomain.org", b"Me@MyDomain.org", b"info@mydomain.org", b"x@", b"", b"\xff@\xfe"]),
            st.sampled_from([b"secret", b"", b"*", b"\x00", b"wrong\rpass"]),
        ),
    )
)
def test_fuzz_requests_only_documented_outcomes(chain: Chain, request_bytes: bytes) -> None:
    """Any fd-3 bytes: the next module, the login program, or AUTHFAILURE/exit 1; never a traceback."""
    result = chain.run(request_bytes, relogin=False)
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 1:
        assert result.stderr.endswith("AUTHFAILURE\n") and result.stdout == ""
    else:
        assert result.returncode == 0
        got = record(result.stdout)
        assert got["program"] == "next"
        if "AUTHENTICATED" in got:
            assert got["uid"] == str(chain.domain.uid) and got["MAILDIR"].startswith("./users/")
        else:
            assert got["uid"] == "0" and result.stdout.split("fd3=[", 1)[1] == _text(request_bytes) + "]\n"
