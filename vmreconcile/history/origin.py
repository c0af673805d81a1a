"""Who applied which configuration: the user, the configuration's digest and its git commit.

The digest of a single configuration file is its plain sha256, so ``sha256sum mail.yaml``
shows the same value; for a directory it is the sha256 of ``sha256sum``'s listing of its
``*.yaml`` files (``cd DIR && sha256sum *.yaml | sha256sum``). The commit is read with git
when the configuration lies in a git work tree, and git is run defensively: apply runs as
root, and the repository may belong to someone else. Only plumbing that runs no hooks and no
filters (``rev-parse``, ``ls-tree``) is used, without the user's or the system's git
configuration, with ``core.fsmonitor`` and hooks off, no optional locks and a timeout. A
missing or failing git never fails an apply: the commit is then simply not recorded.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..desired.load import config_files

#: Seconds one git command may take.
GIT_TIMEOUT = 5.0
#: Entries kept when the configuration says nothing (``history: {keep: N}``).
DEFAULT_KEEP = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """What an entry records about where an apply came from."""

    command: str  # "apply" or "rollback"
    user: str
    uid: int
    config: str | None = None  # the configuration (or plan file) as given, made absolute
    config_digest: str | None = None
    commit: str | None = None
    commit_dirty: bool | None = None
    keep: int = DEFAULT_KEEP
    rollback_of: int | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "command": self.command,
            "user": self.user,
            "uid": self.uid,
            "config": self.config,
            "config_digest": self.config_digest,
            "commit": self.commit,
            "commit_dirty": self.commit_dirty,
            "keep": self.keep,
            "rollback_of": self.rollback_of,
        }


def invoking_user() -> tuple[str, int]:
    """(name, uid): ``SUDO_USER`` when run through sudo, else the login name, else the uid's name."""
    uid = os.getuid()
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        return sudo, uid
    try:
        return os.getlogin(), uid
    except OSError:
        pass
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


def config_origin(config: Path, keep: int = DEFAULT_KEEP) -> Origin:
    """The origin of an apply of the configuration at ``config`` (a file or a directory)."""
    user, uid = invoking_user()
    files = config_files(config)
    contents = {}
    for file in files:
        try:
            contents[file] = file.read_bytes()
        except OSError:
            contents[file] = b""
    commit, dirty = git_commit(config, contents)
    return Origin(
        command="apply",
        user=user,
        uid=uid,
        config=str(config.absolute()),
        config_digest=config_digest(config, contents),
        commit=commit,
        commit_dirty=dirty,
        keep=keep,
    )


def plan_file_origin(path: Path, keep: int = DEFAULT_KEEP) -> Origin:
    """The origin of ``apply --plan FILE``: the plan file's digest stands for the configuration."""
    user, uid = invoking_user()
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = None
    return Origin(
        command="apply", user=user, uid=uid, config=f"plan file {path.absolute()}", config_digest=digest, keep=keep
    )


def unknown_origin() -> Origin:
    """An apply whose configuration is not known (a caller that did not say)."""
    user, uid = invoking_user()
    return Origin(command="apply", user=user, uid=uid)


def config_digest(config: Path, contents: dict[Path, bytes]) -> str:
    """sha256 of the file, or of a directory's ``sha256sum`` listing (see the module docs)."""
    if not config.is_dir() and len(contents) == 1:
        return hashlib.sha256(next(iter(contents.values()))).hexdigest()
    listing = "".join(f"{hashlib.sha256(data).hexdigest()}  {file.name}\n" for file, data in contents.items())
    return hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()


def work_tree(start: Path) -> Path | None:
    """The top of the git work tree holding ``start`` (a ``.git`` directory or file), if any."""
    here = start.absolute()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _git(top: Path, *args: str) -> str | None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }
    command = [
        "git",
        "--no-optional-locks",
        "-c",
        f"safe.directory={top}",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "-C",
        str(top),
        *args,
    ]
    try:
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace")


def git_commit(config: Path, contents: dict[Path, bytes]) -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether the configuration files differ from it), or (None, None)."""
    top = work_tree(config if config.is_dir() else config.parent)
    if top is None:
        return None, None
    head = _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if head is None or not head.strip():
        return None, None
    commit = head.strip()
    relative = {}
    for file in contents:
        try:
            relative[file.absolute().relative_to(top).as_posix()] = file
        except ValueError:
            return commit, True
    listing = _git(top, "ls-tree", "-z", "--full-tree", "HEAD", "--", *relative) if relative else ""
    if listing is None:
        return commit, None
    committed = {}
    for record in listing.split("\0"):
        meta, _, name = record.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            committed[name] = parts[2]
    dirty = any(committed.get(name) != _blob_id(contents[file], len(commit)) for name, file in relative.items())
    return commit, dirty


def _blob_id(data: bytes, hex_length: int) -> str:
    """git's object id of a blob with ``data`` (sha1, or sha256 in a sha256 repository)."""
    algorithm = hashlib.sha256 if hex_length == 64 else hashlib.sha1
    return algorithm(b"blob %d\0" % len(data) + data).hexdigest()
