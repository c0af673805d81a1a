"""Shared helpers for the authpipe/authvmailmgr tests (no tests of its own).

A "domain" here is a throwaway rooted host: a world-traversable directory under /tmp (the
base user must reach its home after the setuid, and pytest's own tmp dirs are 0700 root),
holding ``etc/passwd`` that lists a real throwaway system account with its real uid/gid, the
fixture table of a VMailMgr step in that account's home, and the runtime launchers with the
root baked in. Everything is removed again afterwards, the account included.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURE_PASSWORDS, IS_ROOT, build_step_root  # noqa: F401

from vmreconcile.host import untrusted_directory
from vmreconcile.install import install_runtime

STEP = "11-after-deliveries"
DOMAIN = "mydomain.org"


@dataclass(frozen=True)
class Domain:
    root: Path
    base: str
    uid: int
    gid: int
    home: Path
    bindir: Path

    @property
    def table(self) -> Path:
        return self.home / "passwd.cdb"

    def launcher(self, program: str) -> Path:
        return self.bindir / program

    def set_changeable(self, *keys: str) -> None:
        path = self.root / "etc" / "vmailmgr" / "vmreconcile-passwd-changeable"
        path.write_text("# written by the tests\n" + "".join(f"{self.base}/{k}\n" for k in keys))


#: Where `world_dir` makes root's directories when /tmp will not do: /run is root's alone, and
#: the name is not the package's (the package test requires nothing named after it to appear).
ROOT_WORLD_BASE = Path("/run/vmr-test-worlds")


def world_base() -> Path:
    """/tmp, unless someone else could write into it or a directory above it (a real host's
    sticky 1777 /tmp): vauthd refuses a socket under such a directory, so root's worlds then go
    to `ROOT_WORLD_BASE` (0755, root's, on /run) and other users' to ``~/.cache`` (their own)."""
    if untrusted_directory("/tmp", {0, os.geteuid()}, sticky_entries=False) is None:
        return Path("/tmp")
    base = ROOT_WORLD_BASE if IS_ROOT else Path.home() / ".cache" / "vmr-test-worlds"
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    return base


@contextmanager
def world_dir(prefix: str) -> Iterator[Path]:
    """A 0755 directory under `world_base` (/tmp where it is safe), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=world_base()))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def system_user(prefix: str = "vmrc") -> Iterator[pwd.struct_passwd]:
    """A throwaway system account (no home created), deleted afterwards. Root only."""
    if not IS_ROOT:
        pytest.skip("creating system users needs root; CI runs as root")
    name = f"{prefix}{secrets.token_hex(3)}"
    subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            f"/nonexistent/{name}",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--force", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


@contextmanager
def domain(
    prefix: str = "vmrc", step: str = STEP, programs: tuple[str, ...] = ("authpipe", "authvmailmgr")
) -> Iterator[Domain]:
    """A rooted host with one base user owning ``mydomain.org`` (the fixture step's table)."""
    with system_user(prefix) as entry, world_dir("vmr-courier-") as top:
        root = top / "root"
        home = build_step_root(step, root, base_user=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)
        chown_tree(home, entry.pw_uid, entry.pw_gid)
        bindir = top / "bin"
        install_runtime(bindir, root=str(root), libdir=top / "lib", programs=programs)
        # Root-only runtime copy: an import after the setuid (authvmailmgr's login, authpipe's
        # PASSWD child) would fail, so the tests prove everything is imported before it.
        (top / "lib").chmod(0o700)
        yield Domain(root, entry.pw_name, entry.pw_uid, entry.pw_gid, home, bindir)


# --------------------------------------------------------------------------- a private authdaemond

AUTHDAEMOND = "/usr/lib/courier/courier-authlib/authdaemond"
LIBAUTHPIPE = "/usr/lib/courier-authlib/libauthpipe.so"

AUTHDAEMONRC = """\
authmodulelist="authpipe"
authmodulelistorig="authpipe"
daemons=2
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=1
DEFAULTOPTIONS=""
LOGGEROPTS=""
"""


@dataclass
class Courier:
    domain: Domain
    pid: int
    log: Path

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "--mount", f"--target={self.pid}", *argv],
            capture_output=True,
            text=True,
            timeout=40,
        )

    def authtest(self, user: str, *passwords: str) -> subprocess.CompletedProcess[str]:
        return self.run("authtest", "-s", "imap", user, *passwords)


def _our_processes(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (our temp dir): what we started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


@contextmanager
def authdaemond(dom: Domain, modules: str = "authpipe") -> Iterator[Courier]:
    """A private authdaemond in its own mount namespace, started the way Debian's script does."""
    with world_dir("vmr-authdaemon-") as top:
        etc = top / "etc"
        run = top / "run"
        etc.mkdir()
        run.mkdir(mode=0o750)
        (etc / "authdaemonrc").write_text(AUTHDAEMONRC.replace('"authpipe"', f'"{modules}"', 1))
        (etc / "authProg").symlink_to(dom.launcher("authpipe"))
        log = top / "authdaemond.log"
        script = (  # /usr/sbin/authdaemond does 'set -a; . /etc/courier/authdaemonrc' too
            f"mount --bind {etc} /etc/courier && mount --bind {run} /run/courier/authdaemon && "
            f"set -a && . /etc/courier/authdaemonrc && exec {AUTHDAEMOND}"
        )
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 10
            while not (run / "socket").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"authdaemond did not start: {log.read_text()}")
                time.sleep(0.02)
            yield Courier(dom, proc.pid, log)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            deadline = time.monotonic() + 5
            while _our_processes(str(dom.bindir)) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in _our_processes(str(dom.bindir)):
                os.kill(pid, signal.SIGKILL)
