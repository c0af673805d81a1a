"""checkvpw beyond the oracle transcripts: hooks [compat: hooks, checkvpw], domains by TCPLOCALHOST
or host name [compat: login-names], interpreter isolation of the launcher, and table safety. All through a real
launcher, as root, in a throwaway rooted world."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from loginkit import create_world, destroy_world, run_fd3

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="checkvpw must start as root (setuid); CI runs as root"),
]

GOOD = b"me@mydomain.org\0secret\0\0"
# (the script must not contain "maildir" in any case, or checkvpw replaces the script itself)
PRINT_ENV = ["/bin/sh", "-c", 'echo "uid=$(id -u) md=$(printenv MAIL""DIR) vuser=$VUSER arg=$0"', "Maildir"]


@pytest.fixture(scope="module")
def world():
    made = create_world(programs=("checkvpw",))
    made.log_dir = made.root / "hooklog"
    made.log_dir.mkdir()
    made.log_dir.chmod(0o777)
    yield made
    destroy_world(made)


@pytest.fixture
def hook(world):
    """Install ``hook(name, body, local=False, mode=0o755)``; everything is removed afterwards."""
    made: list[Path] = []
    local_dir = world.home / ".vmailmgr"

    def install(name: str, body: str, local: bool = False, mode: int = 0o755) -> Path:
        directory = local_dir if local else world.config_dir
        if local and not local_dir.exists():
            local_dir.mkdir()
            os.chown(local_dir, world.uid, world.gid)
            made.append(local_dir)
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(mode)
        made.append(path)
        return path

    yield install
    for path in reversed(made):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for entry in world.log_dir.iterdir():
        entry.unlink()


def log(world) -> list[str]:
    path = world.log_dir / "log"
    return path.read_text().splitlines() if path.exists() else []


def checkvpw(world, fd3: bytes = GOOD, argv: list[str] | None = None, env: dict[str, str] | None = None, **kw):
    return run_fd3([world.launcher("checkvpw"), *(argv or PRINT_ENV)], fd3, env=env, **kw)


# ------------------------------------------------------------------------------- hooks


def test_presetuid_runs_as_root_from_etc_only(world, hook):
    record = f'echo "$(basename $0) uid=$(id -u) vuser=$VUSER user=$USER" >> {world.log_dir}/log'
    hook("checkvpw-presetuid", record)
    hook("checkvpw-presetuid", record.replace("$(basename $0)", "LOCAL"), local=True)
    result = checkvpw(world)
    assert result.code == 0, result.err
    assert log(world) == [f"checkvpw-presetuid uid=0 vuser=me user={world.name}"]


def test_presetuid_failure_is_temporary_and_nothing_runs(world, hook):
    hook("checkvpw-presetuid", "exit 5")
    hook("checkvpw-error", f'echo "error uid=$(id -u) $CHECKVPW_ERROR" >> {world.log_dir}/log')
    result = checkvpw(world)
    assert (result.code, result.out) == (111, "")
    assert log(world) == ["error uid=0 Execution of presetuid failed"]


def test_postsetuid_chain_global_then_local_with_stored_maildir(world, hook):
    hook("checkvpw-postsetuid", f'echo "global uid=$(id -u) maildir=$MAILDIR" >> {world.log_dir}/log')
    hook("checkvpw-postsetuid", f'echo "local uid=$(id -u) maildir=$MAILDIR" >> {world.log_dir}/log', local=True)
    result = checkvpw(world)
    assert result.code == 0
    assert log(world) == [f"global uid={world.uid} maildir=./users/me", f"local uid={world.uid} maildir=./users/me"]


def test_postsetuid_failure_stops_chain_and_login(world, hook):
    hook("checkvpw-postsetuid", "exit 7")
    hook("checkvpw-postsetuid", f"echo local >> {world.log_dir}/log", local=True)
    hook("checkvpw-error", f'echo "error uid=$(id -u) $CHECKVPW_ERROR" >> {world.log_dir}/log', local=True)
    result = checkvpw(world)
    assert (result.code, result.out) == (111, "")
    # fixed message (VMailMgr says "presetuid" here [compat: differences]); the local error hook runs too
    assert log(world) == [f"error uid={world.uid} Execution of postsetuid failed"]


def test_postexec_runs_after_success_and_its_status_is_ignored(world, hook):
    hook("checkvpw-postexec", f'echo "postexec uid=$(id -u) $MAILDIR"; echo postexec >> {world.log_dir}/log; exit 9')
    result = checkvpw(world)
    assert result.code == 0
    assert result.out.splitlines() == [
        f"uid={world.uid} md=./users/me vuser=me arg=./users/me",
        f"postexec uid={world.uid} ./users/me",
    ]
    assert log(world) == ["postexec"]


def test_hook_without_execute_bit_is_skipped(world, hook):
    hook("checkvpw-presetuid", "exit 1", mode=0o644)
    assert checkvpw(world).code == 0


def test_loginfail_hook_gets_the_message(world, hook):
    hook("checkvpw-loginfail", f'echo "$(id -u) $CHECKVPW_ERROR" >> {world.log_dir}/log')
    assert checkvpw(world, b"me@mydomain.org\0wrong\0\0").code == 1
    assert log(world) == [f"{world.uid} Invalid or incorrect password"]


# ------------------------------------------------------------------------------- domains


@pytest.fixture
def host_domain(world):
    """This machine's host name as a virtual domain of the world's base user (restored after)."""
    path = world.control_dir / "virtualdomains"
    saved = path.read_text()
    hostname = os.uname().nodename
    path.write_text(saved + f"{hostname}:{world.name}\nip-10-0-0-1.example:{world.name}\n")
    yield hostname
    path.write_text(saved)


def test_no_domain_uses_tcplocalhost(world):
    env = {"PATH": "/usr/bin:/bin", "TCPLOCALHOST": "MyDomain.org"}
    result = checkvpw(world, b"me\0secret\0\0", env=env)
    assert result.code == 0 and "vuser=me" in result.out


def test_no_domain_without_tcplocalhost_uses_the_host_name(world, host_domain):
    result = checkvpw(world, b"me\0secret\0\0")
    assert result.code == 0, result.err
    assert "md=./users/me" in result.out


def test_empty_tcplocalhost_falls_back_to_the_host_name(world, host_domain):
    result = checkvpw(world, b"me\0secret\0\0", env={"PATH": "/usr/bin:/bin", "TCPLOCALHOST": ""})
    assert result.code == 0


def test_tcplocalhost_wins_over_the_host_name(world, host_domain):
    env = {"PATH": "/usr/bin:/bin", "TCPLOCALHOST": "unknown.example"}
    assert checkvpw(world, b"me\0secret\0\0", env=env).code == 1
    env["TCPLOCALHOST"] = "ip-10-0-0-1.example"  # an IP-based virtual host: per-address name
    assert checkvpw(world, b"me\0secret\0\0", env=env).code == 0


def test_host_name_not_virtual_means_unknown(world):
    if os.uname().nodename.lower() in ("mydomain.org", "localhost", "mx.oracle.test"):
        pytest.skip("this machine's host name is one of the fixture's domains")
    assert checkvpw(world, b"me\0secret\0\0").code == 1


def test_base_dash_virtual_needs_no_domain(world):
    result = checkvpw(world, world.name.encode() + b"-me\0secret\0\0")
    assert result.code == 0 and "vuser=me" in result.out


# ------------------------------------------------------------------------------- isolation


EVIL = """import os
open({marker!r}, "a").write({what!r} + "\\n")
"""


def _evil_tree(tmp: Path, marker: Path) -> Path:
    """Modules a non-isolated interpreter would pick up from PYTHONPATH, cwd or a .pth."""
    evil = tmp / "evil"
    (evil / "vmreconcile" / "runtime" / "login").mkdir(parents=True)
    for rel in (
        "vmreconcile/__init__.py",
        "vmreconcile/runtime/__init__.py",
        "vmreconcile/runtime/login/__init__.py",
        "vmreconcile/runtime/login/checkvpw.py",
        "sitecustomize.py",
        "usercustomize.py",
        "pathlib.py",
        "dataclasses.py",
        "hashlib.py",
    ):
        (evil / rel).write_text(EVIL.format(marker=str(marker), what=rel))
    site = (
        tmp / "home" / ".local" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
    site.mkdir(parents=True)
    (site / "evil.pth").write_text(f"import os; open({str(marker)!r}, 'a').write('pth\\n')\n")
    for name in ("sitecustomize.py", "usercustomize.py"):
        (site / name).write_text(EVIL.format(marker=str(marker), what="user site " + name))
    return evil


def test_launcher_ignores_pythonpath_pth_and_cwd(world, tmp_path):
    marker = tmp_path / "injected"
    evil = _evil_tree(tmp_path, marker)
    home = tmp_path / "home"
    # /usr/bin/python3 here (Debian's 3.11 as the launcher uses) — the user-site path depends on it
    version = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = home / ".local" / "lib" / f"python{version}" / "site-packages"
    if not site.exists():
        shutil.copytree(
            home / ".local" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}", site.parent
        )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(evil),
        "HOME": str(home),
        "PYTHONSTARTUP": str(evil / "sitecustomize.py"),
        "PYTHONUSERBASE": str(home / ".local"),
        "PYTHONSAFEPATH": "",
        "PYTHONNOUSERSITE": "",
    }
    # control: a plain interpreter with this environment and cwd does run the injected code
    subprocess.run(["/usr/bin/python3", "-c", "import pathlib"], env=env, cwd=evil, check=False, capture_output=True)
    assert marker.exists(), "the control run should have been injected; the test setup is broken"
    marker.unlink()
    result = checkvpw(world, env=env, cwd=str(evil))
    assert result.code == 0, result.err
    assert "vuser=me" in result.out
    assert not marker.exists(), marker.read_text()


# ------------------------------------------------------------------------------- table safety


def test_symlinked_table_is_a_temporary_failure(world):
    table = world.home / "passwd.cdb"
    moved = world.home / "real.cdb"
    table.rename(moved)
    table.symlink_to(moved)
    try:
        result = checkvpw(world)
    finally:
        table.unlink()
        moved.rename(table)
    assert (result.code, result.out) == (111, "")


def test_fd3_closed_is_bad_input(world):
    assert checkvpw(world, None).code == 2


def test_too_much_input_fails_without_waiting_for_eof(world):
    result = checkvpw(world, b"x" * 600, keep_fd3_open=True, timeout=10)
    assert (result.code, result.out) == (2, "")


def test_signal_killed_child_is_temporary_failure(world):
    result = checkvpw(world, argv=["/bin/sh", "-c", "kill -9 $$", "Maildir"])
    assert result.code == 111


def test_child_gets_default_sigpipe(world):
    result = checkvpw(world, argv=["/bin/sh", "-c", "grep SigIgn /proc/self/status", "Maildir"])
    assert result.code == 0
    ignored = int(result.out.split()[1], 16)
    assert not ignored & (1 << (13 - 1)), "SIGPIPE must not be ignored in the child"


def test_sigint_ends_checkvpw_without_a_traceback(world):
    """SIGINT while waiting for the child: the process ends like a C program, silently."""
    result = checkvpw(world, argv=["/bin/sh", "-c", "kill -INT $PPID; sleep 0.5", "Maildir"])
    assert result.code == -2
    assert result.err == ""


def test_a_root_only_runtime_copy_still_serves_every_hash_scheme(world):
    """Everything a login needs is imported before the setuid: with the runtime copy made
    unreadable to the base user, a $6$ user (libxcrypt via ctypes) still logs in."""
    lib = Path(world.launcher("checkvpw")).parent.parent / "lib" / "vmreconcile-runtime"
    lib.chmod(0o700)
    try:
        result = checkvpw(world, b"erin@mydomain.org\0erin-pw\0\0")
        assert result.code == 0, result.err
        assert f"uid={world.uid}" in result.out
        assert checkvpw(world, b"erin@mydomain.org\0wrong\0\0").code == 1
    finally:
        lib.chmod(0o755)
