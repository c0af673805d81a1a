"""Shared test fixtures: the oracle fixtures in ../shared, throwaway roots and system users."""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from vmreconcile import host as host_module
from vmreconcile.host import Host, parse_passwd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "vmailmgr-real"
STEPS = sorted(p.name for p in (FIXTURES / "steps").iterdir()) if (FIXTURES / "steps").is_dir() else []
IS_ROOT = os.geteuid() == 0

#: Plaintext passwords of the fixture users (fixtures README), final values.
FIXTURE_PASSWORDS = {
    "me": "secret",
    "alice": "alice-pass-2",
    "bob": "b0b p@ss:w0rd",
    "carol": "carol-pw",
    "dave": "dave-plain",
    "erin": "erin-pw",
    "grace": "grace-pw",
    "henry.ford": "henry-pw",
    "frank": "frank-pw",
}

requires_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (setuid/chown/system users); CI runs as root")


def step_dir(step: str) -> Path:
    return FIXTURES / "steps" / step


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int
    home: Path


@pytest.fixture
def make_system_user(tmp_path_factory):
    """Create throwaway system accounts (root only); they are removed again after the test."""
    if not IS_ROOT:
        pytest.skip("creating system users needs root; CI runs as root")
    created: list[str] = []

    def make(prefix: str = "vmrt", home: Path | None = None, password: str | None = None) -> SystemUser:
        name = f"{prefix}{secrets.token_hex(3)}"
        home = home or tmp_path_factory.mktemp("home") / name
        home.parent.mkdir(parents=True, exist_ok=True)
        home.parent.chmod(0o755)
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ],
            check=True,
            capture_output=True,
        )
        created.append(name)
        if password is not None:
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        entry = pwd.getpwnam(name)
        home.mkdir(exist_ok=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        home.chmod(0o700)
        return SystemUser(name, entry.pw_uid, entry.pw_gid, home)

    yield make
    for name in created:
        subprocess.run(["userdel", "--force", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def copy_step_home(step: str, home: Path) -> None:
    """Recreate a fixture step's base-user home (tree.txt layout) under ``home``."""
    src = step_dir(step)
    for line in (src / "tree.txt").read_text().splitlines():
        mode, _owner, rel = line.split(" ", 2)
        target = home / rel
        if mode.startswith("d"):
            target.mkdir(parents=True, exist_ok=True)
        elif rel == "./passwd.cdb":
            shutil.copyfile(src / "passwd.cdb", target)
        elif rel == "./.qmail-default" or rel == "./.qmail-default~":
            target.write_text((src / "qmail-default.txt").read_text())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")
        target.chmod(_mode_bits(mode))


def _mode_bits(text: str) -> int:
    bits = 0
    for ch, value in zip(text[1:], (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1), strict=True):
        if ch != "-":
            bits |= value
    return bits


def build_step_root(step: str, root: Path, base_user: str = "vbase1", uid: int = 1008, gid: int = 1008) -> Path:
    """A throwaway ``--root`` tree shaped like the oracle machine after ``step``.

    Layout from ``environment.txt``: /etc/passwd with the base user, /etc/vmailmgr/qmail-root,
    /var/qmail/control/{me,locals,virtualdomains,rcpthosts}, /home/vbase1 from ``tree.txt``.
    Returns the base user's home inside the root.
    """
    (root / "etc" / "vmailmgr").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\n{base_user}:x:{uid}:{gid}::/home/{base_user}:/bin/sh\n"
    )
    (root / "etc" / "group").write_text(f"root:x:0:\n{base_user}:x:{gid}:\n")
    (root / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    control = root / "var" / "qmail" / "control"
    control.mkdir(parents=True, exist_ok=True)
    (control / "me").write_text("mx.oracle.test\n")
    (control / "locals").write_text("localhost\nmx.oracle.test\n")
    (control / "virtualdomains").write_text(f"mydomain.org:{base_user}\n.mydomain.org:{base_user}\n")
    (control / "rcpthosts").write_text("localhost\nmx.oracle.test\nmydomain.org\n.mydomain.org\n")
    home = root / "home" / base_user
    home.mkdir(parents=True, exist_ok=True)
    copy_step_home(step, home)
    home.chmod(0o700)
    own_home(home, uid, gid)
    return home


#: The uid/gid of a base user in a throwaway ``--root`` tree: the caller's own when not root
#: (nobody else can own its files), else an unprivileged uid the home is chowned to. Plan
#: refuses uid 0, system accounts and homes their base user does not own.
TREE_UID = os.getuid() if not IS_ROOT else 4242
TREE_GID = os.getgid() if not IS_ROOT else 4242


def own_home(home: Path, uid: int, gid: int) -> None:
    """Give a tree's home to its base user, as on a real host (only root can; as an ordinary
    user plan accepts a home of a throwaway tree owned by the caller)."""
    if IS_ROOT:
        os.chown(home, uid, gid)


@pytest.fixture
def public_tmp():
    """A temp dir every user can traverse (pytest's own tmp_path is under a 0700 directory)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="vmrtest-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class _SandboxHost(Host):
    """A `Host` that takes the unrooted code paths (``root`` is None, so base users come from
    the ``pwd`` module) while every file it maps lives under ``top``."""

    def __init__(self, top: Path) -> None:
        super().__init__(None)
        self.top = str(top).rstrip("/")

    def fspath(self, absolute: str | os.PathLike[str]) -> str:
        mapped = super().fspath(absolute)
        return self.top + mapped if mapped != "/" else self.top


class _SandboxPwd:
    """Stands in for the ``pwd`` module with the contract of ``getpwnam``: a name that is not a
    file-system string raises ``UnicodeEncodeError``, one with NUL ``ValueError``, an unknown one
    ``KeyError``; the accounts are those of ``top/etc/passwd``, never the machine's."""

    def __init__(self, top: Path) -> None:
        passwd = top / "etc" / "passwd"
        self.users = parse_passwd(passwd.read_bytes() if passwd.exists() else b"")

    def getpwnam(self, name: str) -> pwd.struct_passwd:
        if b"\0" in os.fsencode(name):
            raise ValueError("embedded null byte")
        user = self.users.get(name)
        if user is None:
            raise KeyError(f"getpwnam(): name not found: {name!r}")
        return pwd.struct_passwd((user.name, "x", user.uid, user.gid, "", user.home, "/usr/sbin/nologin"))


@contextmanager
def unrooted_sandbox(top: Path) -> Iterator[Host]:
    """A host for tests of the unrooted (no ``--root``) paths that reads nothing of the machine:
    files under ``top``, accounts from ``top/etc/passwd`` through a stand-in ``pwd``."""
    with mock.patch.object(host_module, "pwd", _SandboxPwd(top)):
        yield _SandboxHost(top)


#: Fixtures of module or session scope (built before any test's own cache is set) use this one.
_SESSION_CACHE = tempfile.mkdtemp(prefix="vmreconcile-test-cache-")
os.environ["VMRECONCILE_CACHE_DIR"] = _SESSION_CACHE
atexit.register(shutil.rmtree, _SESSION_CACHE, True)


def git(cwd: Path, *args: str) -> str:
    """``git -C cwd ARGS`` as a throwaway identity, untouched by the machine's global
    configuration; its output, stripped."""
    return subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=Test", "-c", "user.email=t@example.test", *args],
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def load_script(path: Path, name: str):
    """A Python file that is no module of a package (debian/extras.py, man/manpages.py, the
    Ansible module) loaded as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def pythonpath_for_others() -> str:
    """A ``PYTHONPATH`` from which any user can import this checkout's vmreconcile, for tests
    that run the CLI as a throwaway user: the checkout itself when every directory above it
    lets others through, else a copy of the package, schemas and examples in a public
    directory (a clone under a 0700 directory, such as one made by ``mktemp -d``), removed at
    exit."""
    if _others_can_read(REPO / "vmreconcile" / "__init__.py"):
        return str(REPO)
    copy = Path(tempfile.mkdtemp(prefix="vmrtest-checkout-", dir="/tmp"))
    copy.chmod(0o755)
    atexit.register(shutil.rmtree, copy, True)
    for name in ("vmreconcile", "schemas", "examples"):
        shutil.copytree(REPO / name, copy / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return str(copy)


def cli_as_user(user, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``vmreconcile ARGS`` run as the throwaway ``user`` (no supplementary groups) in ``cwd``
    (also its HOME), with a bare environment."""
    return subprocess.run(
        [python_for_others(), "-c", "from vmreconcile.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(cwd), "PYTHONPATH": pythonpath_for_others()},
        cwd=cwd,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        timeout=120,
    )


def python_for_others() -> str:
    """The interpreter to run vmreconcile with as a throwaway user: this one, unless it sits
    where others cannot reach it (a venv inside such a clone); then Debian's, with Debian's
    python3-* libraries (bin/test installs them as root)."""
    return sys.executable if _others_can_read(Path(sys.executable)) else "/usr/bin/python3"


def _others_can_read(path: Path) -> bool:
    if not os.stat(path).st_mode & 0o004:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


#: The test's private plan cache (`private_plan_cache`): kept by `environ_without`.
CACHE_VARIABLE = "VMRECONCILE_CACHE_DIR"


def environ_without(*prefixes: str) -> dict[str, str]:
    """``os.environ`` without the variables that start with ``prefixes`` (a scrubbed
    environment, as a CI runner or systemd gives), except this test's private plan cache:
    no test may fill the machine's /var/cache/vmreconcile, which the package test requires to
    be gone after a purge."""
    return {k: v for k, v in os.environ.items() if k == CACHE_VARIABLE or not k.startswith(prefixes)}


@pytest.fixture(autouse=True)
def private_plan_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own plan cache (``--cache-dir``), so no test reads or fills the
    machine's /var/cache/vmreconcile and none sees another's entries; the cache tests set
    their own. Subprocesses inherit it through the environment."""
    directory = tmp_path_factory.mktemp("plan-cache") / "cache"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(CACHE_VARIABLE, str(directory))
    monkeypatch.delenv("VMRECONCILE_NO_CACHE", raising=False)
    return directory


def never_empty_cdb(slots: int, empty_from: int | None = None) -> tuple[bytes, str]:
    """``(table, login name)``: a crafted cdb whose hash-table bucket of ``login name`` has
    ``slots`` full slots (all pointing at one record, none with the name's hash) and no empty
    one, or empty ones from slot ``empty_from`` on. Laid out exactly as cdbmake lays tables out
    (`CdbReader.check_layout` passes): only a lookup can notice that it never meets an empty
    slot, and cdb's own lookup would walk all of them (security review #3)."""
    import struct

    from vmreconcile.formats.cdb import HEADER_SIZE, vmailmgr_hash
    from vmreconcile.formats.vpwentry import user_key

    name = next(f"u{i}" for i in range(100_000) if vmailmgr_hash(user_key(f"u{i}")) & 255 == 7)
    record = struct.pack("<II", 1, 1) + b"ab"
    end = HEADER_SIZE + len(record)
    header, pos = [], end
    for bucket in range(256):
        count = slots if bucket == 7 else 0
        header += [pos, count]
        pos += 8 * count
    empty_from = slots if empty_from is None else empty_from
    full = struct.pack("<II", 1, end)  # hash 1 is never the name's: a lookup keeps probing
    return struct.pack("<512I", *header) + record + full * empty_from + b"\0" * 8 * (slots - empty_from), name
