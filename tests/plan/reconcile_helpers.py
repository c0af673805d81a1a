"""Helpers shared by the plan/apply tests: specs built in code, throwaway roots, tree listings.

`spec_from_state` plays the role of ``export`` (every field explicit, literal hashes), so the
planner's tests do not depend on the YAML layer; the CLI tests go through real YAML.
"""

from __future__ import annotations

import stat
from pathlib import Path

from tests.conftest import TREE_GID, TREE_UID, build_step_root, own_home
from vmreconcile.desired.spec import DomainSpec, PasswordSpec, Spec, UserSpec
from vmreconcile.model import Domain, HostState, VirtualUser

#: The HOWTO scenario as YAML: mydomain.org, a user with an {env:} password, aliases and the catch-all.
HOWTO = """\
domains:
  mydomain.org:
    base_user: myuser
    wildcard: true
    catch_all: me
    users:
      me:
        password: {env: ME_PW}
        aliases: [myself, myname]
"""


def user_spec(user: VirtualUser) -> UserSpec:
    return UserSpec(
        name=user.name,
        kind="alias" if user.is_alias else "user",
        password=PasswordSpec("hash", user.password),
        forwards=user.forwards,
        directory=user.directory,
        has_mailbox=user.has_mailbox,
        mailbox_enabled=user.mailbox_enabled,
        personal=user.personal,
        hard_quota=user.hard_quota,
        soft_quota=user.soft_quota,
        message_size_limit=user.message_size_limit,
        message_count_limit=user.message_count_limit,
        created=user.created,
        expires=user.expires,
    )


def spec_from_domain(domain: Domain, prune: bool = True) -> DomainSpec:
    return DomainSpec(
        name=domain.name,
        base_user=domain.base_user,
        wildcard=domain.wildcard,
        domain_aliases=domain.domain_aliases,
        options=dict(domain.options),
        prune=prune,
        users=tuple(user_spec(u) for u in domain.users),
    )


def spec_from_state(state: HostState, prune: bool = True) -> Spec:
    """What ``export`` would write: every domain, every entry, every field explicit."""
    return Spec(domains=tuple(spec_from_domain(d, prune) for d in state.domains), options=dict(state.options))


def howto_spec(password: PasswordSpec | None = None) -> Spec:
    """The HOWTO scenario: mydomain.org, base user myuser, wildcard, me (+ myself, myname), catch-all me."""
    me = UserSpec(
        "me",
        password=password or PasswordSpec("hash", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"),
        aliases=("myself", "myname"),
    )
    return Spec(domains=(DomainSpec("mydomain.org", "myuser", wildcard=True, catch_all="me", users=(me,)),))


def empty_root(
    root: Path,
    base_user: str = "myuser",
    uid: int | None = None,
    gid: int | None = None,
    rcpthosts: str = "localhost\n",
) -> Path:
    """A --root with one base user (current uid/gid by default), an empty home and a qmail tree."""
    uid = TREE_UID if uid is None else uid
    gid = TREE_GID if gid is None else gid
    (root / "etc" / "vmailmgr").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text(f"{base_user}:x:{uid}:{gid}::/home/{base_user}:/bin/sh\n")
    (root / "etc" / "vmailmgr" / "qmail-root").write_text("/var/qmail\n")
    control = root / "var" / "qmail" / "control"
    control.mkdir(parents=True, exist_ok=True)
    (control / "me").write_text("mx.example.test\n")
    (control / "rcpthosts").write_text(rcpthosts)
    home = root / "home" / base_user
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    own_home(home, uid, gid)
    return home


def step_root_with_empty_home(step: str, root: Path) -> Path:
    """A fixture step's root, then the base user's home emptied (same user, same control files)."""
    home = build_step_root(step, root)
    for path in sorted(home.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    return home


def tree(home: Path) -> list[tuple[str, int, str]]:
    """(mode string, owner uid, ./relative path) for everything under ``home``, like tree.txt."""
    out = [(stat.filemode(home.lstat().st_mode), home.lstat().st_uid, ".")]
    for path in sorted(home.rglob("*")):
        info = path.lstat()
        out.append((stat.filemode(info.st_mode), info.st_uid, "./" + str(path.relative_to(home))))
    return out


def mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for p in root.rglob("*")}
