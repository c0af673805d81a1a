"""Delivery test rig: a real vdeliver launcher, a recording qmail-queue, a throwaway base user.

Per xdist worker, one runtime install (``install_runtime``) with a baked root that holds
``/etc/vmailmgr/qmail-root`` and ``/var/qmail/{control/me,bin/qmail-queue}``. The qmail-queue
stand-in is a small shell script: it writes the message it got on fd 0 and the envelope on
fd 1 into ``$HOME/qq/<pid>.{msg,env,environ}`` and exits with the code in ``$HOME/qq-exit``
(``crash`` kills itself with SIGKILL; ``$HOME/qq-sleep`` makes it wait first), so every test
sees only its own records. Each test gets a fresh base-user home shaped like the oracle's
``10-catchall`` step (the state the real deliveries ran against). As root, the home belongs to
a throwaway system user and vdeliver runs as that user, as qmail-local would run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, IS_ROOT, copy_step_home
from vmreconcile.install import install_runtime

SMALL_EML = (FIXTURES / "messages" / "small.eml").read_bytes()
DOMAIN = "mydomain.org"
BASE = "vbase1"

QMAIL_QUEUE_STANDIN = """#!/bin/sh
# Test stand-in for qmail-queue: records fd 0 (message) and fd 1 (envelope), exits as told.
rec="$HOME/qq"
mkdir -p "$rec" || exit 81
n=$$
cat > "$rec/$n.msg" || exit 82
cat <&1 > "$rec/$n.env" || exit 83
env > "$rec/$n.environ"
if [ -f "$HOME/qq-sleep" ]; then sleep "$(cat "$HOME/qq-sleep")"; fi
code=0
if [ -f "$HOME/qq-exit" ]; then code=$(cat "$HOME/qq-exit"); fi
if [ "$code" = crash ]; then kill -9 $$; fi
exit "$code"
"""


@dataclass
class Runtime:
    base: Path
    launcher: Path
    root: Path


@pytest.fixture(scope="session")
def vdeliver_runtime():
    """One installed launcher + baked root per worker, in a directory every user can read."""
    base = Path(tempfile.mkdtemp(prefix="vdeliver-tests-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "root"
    (root / "etc" / "vmailmgr").mkdir(parents=True)
    (root / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    (root / "var" / "qmail" / "control").mkdir(parents=True)
    (root / "var" / "qmail" / "control" / "me").write_text("mx.oracle.test\n")
    (root / "var" / "qmail" / "bin").mkdir(parents=True)
    standin = root / "var" / "qmail" / "bin" / "qmail-queue"
    standin.write_text(QMAIL_QUEUE_STANDIN)
    standin.chmod(0o755)
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    (launcher,) = install_runtime(base / "bin", root=str(root), programs=("vdeliver",))
    (base / "homes").mkdir(mode=0o755)
    (base / "homes").chmod(0o755)
    yield Runtime(base, launcher, root)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: bytes


class Domain:
    """A base-user home with the oracle's table, and helpers to deliver and inspect."""

    def __init__(self, runtime: Runtime, home: Path, uid: int | None, gid: int | None) -> None:
        self.runtime = runtime
        self.home = home
        self.uid = uid
        self.gid = gid

    # -- setup helpers -------------------------------------------------------------------
    def own(self, path: Path | None = None) -> None:
        """Give ``path`` (default: the whole home) to the base user (root only)."""
        if self.uid is None:
            return
        target = path or self.home
        for item in [target, *target.rglob("*")] if target.is_dir() else [target]:
            os.lchown(item, self.uid, self.gid)

    def write(self, rel: str, data: bytes | str, mode: int = 0o644) -> Path:
        path = self.home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        self.own(path.parent)
        return path

    def set_table(self, users) -> None:
        """Replace passwd.cdb with these `VirtualUser`s (and make their maildirs)."""
        from vmreconcile.formats.cdb import build_cdb
        from vmreconcile.formats.vpwentry import encode_record, user_key

        data = build_cdb([(user_key(u.name), encode_record(u)) for u in users])
        self.write("passwd.cdb", data, 0o600)
        for user in users:
            if user.directory and user.has_mailbox:
                self.make_maildir(user.directory)

    def make_maildir(self, rel: str) -> Path:
        path = self.home / rel
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.own(self.home / rel.lstrip("./").split("/")[0])
        return path

    # -- running -------------------------------------------------------------------------
    def env(self, ext: str, sender: str = "sender@example.net", **extra: str) -> dict[str, str]:
        """The environment qmail-local gives a ``.qmail-default`` program (qmail-local.c)."""
        local = f"{BASE}-{ext}"
        env = {
            "PATH": "/usr/bin:/bin",
            "USER": BASE,
            "HOME": str(self.home),
            "SHELL": "/bin/sh",
            "LOCAL": local,
            "HOST": DOMAIN,
            "RECIPIENT": f"{local}@{DOMAIN}",
            "EXT": ext,
            "DEFAULT": ext,
            "EXT2": "",
            "EXT3": "",
            "EXT4": "",
            "HOST2": "mydomain",
            "HOST3": "mydomain",
            "HOST4": "mydomain",
            "SENDER": sender,
            "NEWSENDER": sender,
            "UFLINE": f"From {sender or 'MAILER-DAEMON'} Tue Nov 24 18:54:20 2026\n",
            "RPLINE": f"Return-Path: <{sender}>\n",
            "DTLINE": f"Delivered-To: {local}@{DOMAIN}\n",
        }
        env.update(extra)
        return env

    def message_file(self, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(dir=self.runtime.base, prefix="msg-")
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
        return Path(name)

    def popen(self, ext: str, message: bytes | Path = SMALL_EML, args=(), env=None, **kwargs) -> subprocess.Popen:
        path = message if isinstance(message, Path) else self.message_file(message)
        stdin = open(path, "rb")  # noqa: SIM115 - closed by the caller through `run`
        user = {} if self.uid is None else {"user": self.uid, "group": self.gid, "extra_groups": []}
        proc = subprocess.Popen(
            [str(self.runtime.launcher), *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else self.env(ext),
            cwd="/",
            **user,
            **kwargs,
        )
        stdin.close()
        if not isinstance(message, Path):
            path.unlink()
        return proc

    def deliver(self, ext: str, message: bytes | Path = SMALL_EML, args=(), env=None, timeout=60) -> Result:
        proc = self.popen(ext, message, args, env)
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)

    # -- inspecting ----------------------------------------------------------------------
    def files(self, maildir: str, sub: str = "new") -> list[Path]:
        return sorted((self.home / maildir / sub).iterdir())

    def contents(self, maildir: str, sub: str = "new") -> list[bytes]:
        return [p.read_bytes() for p in self.files(maildir, sub)]

    def queued(self) -> list[tuple[bytes, bytes]]:
        """(message, envelope) per qmail-queue run, oldest first."""
        rec = self.home / "qq"
        if not rec.is_dir():
            return []
        runs = sorted(rec.glob("*.env"), key=lambda p: p.stat().st_mtime_ns)
        return [(p.with_suffix(".msg").read_bytes(), p.read_bytes()) for p in runs]


@pytest.fixture
def domain(vdeliver_runtime, request) -> Domain:
    """A fresh ``10-catchall`` home; as root it belongs to a throwaway non-root base user."""
    runtime = vdeliver_runtime
    if IS_ROOT:
        make_system_user = request.getfixturevalue("make_system_user")
        home_parent = Path(tempfile.mkdtemp(dir=runtime.base / "homes"))
        home_parent.chmod(0o755)
        user = make_system_user("vdlv", home=home_parent / "home")
        copy_step_home("10-catchall", user.home)
        dom = Domain(runtime, user.home, user.uid, user.gid)
        dom.own()
    else:
        home = Path(tempfile.mkdtemp(dir=runtime.base / "homes")) / "home"
        home.mkdir()
        copy_step_home("10-catchall", home)
        dom = Domain(runtime, home, None, None)
    yield dom
    shutil.rmtree(dom.home.parent, ignore_errors=True)
