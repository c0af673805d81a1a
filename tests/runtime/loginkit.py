"""Helpers for login-runtime tests: a throwaway rooted world with a real base user.

A *world* is a temp directory ROOT (mode 0755, under /tmp so base users can traverse it)
shaped like the oracle machine (`build_step_root`): ROOT/etc/passwd and ROOT/etc/shadow list
a real, throwaway system account (real uid/gid, so setuid and ``id -un`` work) whose home is
ROOT/home/<name>, filled from a fixture step and chowned to it. The runtime is installed
with launchers baked to ROOT, so nothing under the real /etc is read or written, and two
worlds (or two xdist workers) never share a path or a user.

Also `run_fd3`: run a program with bytes on fd 3 (checkpassword style) via posix_spawn,
capturing stdout/stderr, with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vmreconcile.formats.hashing import hash_password
from vmreconcile.host import Host
from vmreconcile.install import install_runtime


def _shared_conftest():
    """tests/conftest.py loaded under its own name (never clash with pytest's "conftest")."""
    import importlib.util

    name = "vmr_tests_shared_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


FIXTURES = _shared_conftest().FIXTURES
build_step_root = _shared_conftest().build_step_root

DEFAULT_STEP = "11-after-deliveries"
SYSTEM_PASSWORD = "base-pass-1"


@dataclass
class World:
    root: Path
    name: str
    uid: int
    gid: int
    bindir: Path
    created_users: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home" / self.name

    @property
    def host(self) -> Host:
        return Host(self.root)

    @property
    def config_dir(self) -> Path:
        return self.root / "etc" / "vmailmgr"

    @property
    def control_dir(self) -> Path:
        return self.root / "var" / "qmail" / "control"

    @property
    def error_maildir(self) -> str:
        return str(self.root / "var" / "lib" / "vmailmgr" / "error-maildir") + "/"

    def launcher(self, program: str) -> str:
        return str(self.bindir / program)

    def set_system_logins(self, enabled: bool | None) -> None:
        path = self.config_dir / "vmreconcile-system-logins"
        if enabled is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text("yes\n" if enabled else "no\n")

    def chown_home(self) -> None:
        for dirpath, _dirnames, filenames in os.walk(self.home):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)


def _useradd(name: str, home: Path) -> tuple[int, int]:
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", "--user-group", name],
        check=True,
        capture_output=True,
    )
    import pwd

    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def userdel(name: str) -> None:
    subprocess.run(["userdel", "--force", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)


def create_world(
    step: str = DEFAULT_STEP,
    programs: tuple[str, ...] = ("checkvpw", "vauthenticate"),
    prefix: str = "vmrl",
) -> World:
    """Make a rooted world with a fresh base user (root only). Call `destroy_world` after."""
    root = Path(tempfile.mkdtemp(prefix="vmr-login-", dir="/tmp")).resolve()
    root.chmod(0o755)
    name = f"{prefix}{secrets.token_hex(3)}"
    try:
        uid, gid = _useradd(name, root / "home" / name)
        world = World(root, name, uid, gid, root / "usr" / "local" / "bin", [name])
        build_step_root(step, root, base_user=name, uid=uid, gid=gid)
        (root / "home").chmod(0o755)
        shadow = hash_password(SYSTEM_PASSWORD, "sha512-crypt")
        (root / "etc" / "shadow").write_text(f"root:*:20000:0:99999:7:::\n{name}:{shadow}:20000:0:99999:7:::\n")
        (root / "etc" / "shadow").chmod(0o600)
        world.chown_home()
        install_runtime(world.bindir, root=str(root), programs=programs)
        return world
    except BaseException:
        userdel(name)
        shutil.rmtree(root, ignore_errors=True)
        raise


def destroy_world(world: World) -> None:
    for name in world.created_users:
        userdel(name)
    shutil.rmtree(world.root, ignore_errors=True)


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def run_fd3(
    argv: list[str],
    fd3: bytes | None,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    timeout: float = 30.0,
    cwd: str | None = None,
    keep_fd3_open: bool = False,
) -> Result:
    """Run ``argv`` with ``fd3`` readable on fd 3 (None: fd 3 closed) and ``stdin`` on fd 0.

    Uses posix_spawn file actions, so the test process's own fds are never touched (safe
    under xdist). ``keep_fd3_open`` leaves the writing end open until the child exits (to
    show the child does not wait forever for EOF once it has read too much).
    Kills the child (and fails) after ``timeout`` seconds.
    """
    env = {"PATH": "/usr/bin:/bin"} if env is None else env
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        inp.write(stdin)
        inp.seek(0)
        actions = [
            (os.POSIX_SPAWN_DUP2, inp.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        r = w = None
        if fd3 is not None:
            r, w = os.pipe()
            actions.append((os.POSIX_SPAWN_DUP2, r, 3))
        else:
            actions.append((os.POSIX_SPAWN_CLOSE, 3))
        old_cwd = None
        if cwd is not None:
            old_cwd = os.getcwd()
        try:
            if cwd is not None:
                os.chdir(cwd)
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        finally:
            if old_cwd is not None:
                os.chdir(old_cwd)
            if r is not None:
                os.close(r)
        try:
            if w is not None:
                with contextlib.suppress(BrokenPipeError):
                    os.write(w, fd3 or b"")
                if not keep_fd3_open:
                    os.close(w)
                    w = None
            deadline = time.monotonic() + timeout
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise TimeoutError(f"{argv} did not finish within {timeout} s")
                time.sleep(0.002)
        finally:
            if w is not None:
                os.close(w)
        out.seek(0)
        err.seek(0)
        return Result(os.waitstatus_to_exitcode(status), out.read(), err.read())


# ------------------------------------------------------------------ oracle transcripts


@dataclass
class Case:
    """One ``=== case:`` block of checkvpw.txt / checkvpw-with-error-hooks.txt."""

    name: str
    fd3: bytes
    argv: list[str]
    extra_env: dict[str, str]
    stdout: list[str]
    stderr: list[str]
    exit: int
    manual: bool


def parse_cases(filename: str) -> list[Case]:
    import shlex

    cases: list[Case] = []
    current: Case | None = None
    for line in (FIXTURES / filename).read_text().split("\n"):
        if line.startswith("=== case: "):
            title = line[len("=== case: ") :]
            manual = "(run manually" in title
            current = Case(title.split(" ")[0], b"", [], {}, [], [], -1, manual)
            cases.append(current)
        elif current is None:
            continue
        elif line.startswith("fd3 (printf format): "):
            current.fd3 = line[len("fd3 (printf format): ") :].encode().replace(b"\\0", b"\0")
        elif line.startswith("extra env: "):
            key, _, value = line[len("extra env: ") :].partition("=")
            current.extra_env[key] = value
        elif line.startswith("argv: "):
            current.argv = [a for a in shlex.split(line[len("argv: ") :]) if a]
        elif line.startswith("stdout: "):
            current.stdout.append(line[len("stdout: ") :])
        elif line.startswith("stderr: "):
            current.stderr.append(line[len("stderr: ") :])
        elif line.startswith("exit: "):
            current.exit = int(line[len("exit: ") :])
    return cases


def adapt(text: str, world: World) -> str:
    """Rewrite the oracle machine's names and paths into the world's."""
    return (
        text.replace("/var/lib/vmailmgr/error-maildir/", world.error_maildir)
        .replace("/home/vbase1", str(world.home))
        .replace("uid=1008", f"uid={world.uid}")
        .replace("gid=1008", f"gid={world.gid}")
        .replace("groups=1008", f"groups={world.gid}")
        .replace("uid 1008", f"uid {world.uid}")
        .replace("user=vbase1", f"user={world.name}")
        .replace("USER=vbase1", f"USER={world.name}")
        .replace("vbase1", world.name)
    )
