"""Every case of the real VMailMgr checkvpw transcripts, replayed against our checkvpw.

The cases are parsed from fixtures/vmailmgr-real/checkvpw.txt and
checkvpw-with-error-hooks.txt and run as root through a real launcher, with a throwaway
base user whose home holds the fixture table of step 11 (same ctimes, quotas, passwords).
Exit code, child stdout (uid/gid/groups/cwd and the sorted child environment) and the hook
output must match after renaming the oracle's user and paths, except for the documented
fixes:

* system-account logins are refused unless /etc/vmailmgr/vmreconcile-system-logins says
  yes (the three system-account cases are run both ways);
* supplementary groups are dropped (`test_supplementary_groups_dropped`).
"""

from __future__ import annotations

import os
import shutil

import pytest
from loginkit import adapt, create_world, destroy_world, parse_cases, run_fd3

from vmreconcile.runtime.login.core import MSG_SYSTEM_LOGINS_DISABLED

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="checkvpw must start as root (setuid); CI runs as root"),
]

PLAIN = [c for c in parse_cases("checkvpw.txt") if not c.manual]
HOOKED = [c for c in parse_cases("checkvpw-with-error-hooks.txt") if not c.manual]
SYSTEM_ACCOUNT_CASES = {
    "unknown-domain-but-system-user",
    "local-domain-base-user",
    "local-domain-base-user-bad-password",
}

HOOK = """#!/bin/sh
echo "hook {name} ran as uid $(id -u): CHECKVPW_ERROR=$CHECKVPW_ERROR" >&2
"""


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("checkvpw",))
    yield made
    destroy_world(made)


@pytest.fixture
def hooks(world):
    paths = []
    for name in ("checkvpw-loginfail", "checkvpw-error"):
        path = world.config_dir / name
        path.write_text(HOOK.format(name=name))
        path.chmod(0o755)
        paths.append(path)
    yield
    for path in paths:
        path.unlink()


@pytest.fixture
def case_setup(world, request):
    """Per-case state the oracle run had: carol's maildir removed for that one case."""
    case = request.param
    moved = None
    if case.name == "good-carol-but-maildir-missing":
        moved = world.home / "users" / "carol.away"
        (world.home / "users" / "carol").rename(moved)
    yield case
    if moved is not None:
        moved.rename(world.home / "users" / "carol")


def expected(case, world, system_logins: bool, hooked: bool):
    """(exit, stdout lines, stderr lines) the case must give in this world and setting."""
    if case.name in SYSTEM_ACCOUNT_CASES and not system_logins:
        hook_line = f"hook checkvpw-loginfail ran as uid 0: CHECKVPW_ERROR={MSG_SYSTEM_LOGINS_DISABLED}"
        return 1, [], [hook_line] if hooked else []
    return case.exit, [adapt(line, world) for line in case.stdout], [adapt(line, world) for line in case.stderr]


def run_case(world, case):
    env = {"PATH": "/usr/bin:/bin", **case.extra_env}
    fd3 = case.fd3.replace(b"vbase1", world.name.encode())
    return run_fd3([world.launcher("checkvpw"), *case.argv], fd3, env=env)


def _check(world, case, system_logins, hooked=False):
    world.set_system_logins(True if system_logins else None)
    try:
        result = run_case(world, case)
    finally:
        world.set_system_logins(None)
    code, out, err = expected(case, world, system_logins, hooked)
    assert result.out.splitlines() == out, result.err
    assert result.err.splitlines() == err
    assert result.code == code


def matrix(cases):
    """Every case with the default setting; the system-account cases also with it on."""
    params = []
    for case in cases:
        params.append(pytest.param(case, False, id=case.name))
        if case.name in SYSTEM_ACCOUNT_CASES:
            params.append(pytest.param(case, True, id=case.name + "-system-logins-on"))
    return params


@pytest.mark.parametrize(("case_setup", "system_logins"), matrix(PLAIN), indirect=["case_setup"])
def test_checkvpw_case(world, case_setup, system_logins):
    _check(world, case_setup, system_logins)


@pytest.mark.parametrize(("case_setup", "system_logins"), matrix(HOOKED), indirect=["case_setup"])
def test_checkvpw_case_with_error_hooks(world, hooks, case_setup, system_logins):
    _check(world, case_setup, system_logins, hooked=True)


def test_supplementary_groups_dropped(world):
    """The oracle kept root's groups 4,27 (``Groups: 4 27``); we keep only the base gid."""
    case = next(c for c in parse_cases("checkvpw.txt") if c.manual)
    assert "Groups:\t4 27" in case.stdout[0]  # the bug we fix, as recorded
    setpriv = shutil.which("setpriv")
    assert setpriv, "util-linux setpriv is needed to give the caller supplementary groups"
    argv = [setpriv, "--groups", "4,27", "--", world.launcher("checkvpw"), *case.argv]
    result = run_fd3(argv, case.fd3)
    assert result.code == 0, result.err
    assert result.out.strip() == f"child: Groups:\t{world.gid}  uid={world.uid} gid={world.gid}"


def test_error_hook_sees_base_user_after_setuid(world, hooks):
    """A child failure runs checkvpw-error as the base user, from /etc then ~/.vmailmgr."""
    local = world.home / ".vmailmgr"
    local.mkdir()
    hook = local / "checkvpw-error"
    hook.write_text('#!/bin/sh\necho "local hook uid $(id -u) $VUSER" >&2\n')
    hook.chmod(0o755)
    os.chown(local, world.uid, world.gid)
    try:
        result = run_fd3(
            [world.launcher("checkvpw"), "/bin/sh", "-c", "exit 3", "Maildir"], b"me@mydomain.org\0secret\0\0"
        )
    finally:
        shutil.rmtree(local)
    assert result.code == 111
    assert result.err.splitlines() == [
        f"hook checkvpw-error ran as uid {world.uid}: CHECKVPW_ERROR=Execution of command line arguments failed",
        f"local hook uid {world.uid} me",
    ]
