"""The host-local key that authenticates saved plans (``plan --out``, ``apply --plan``).

A saved plan carries what apply will write, including fresh hashes and the reload command, and
sits in a file anybody with write access to its directory could edit. So ``plan --out`` signs
it with HMAC-SHA256 under a key that only root on this host can read, and ``apply --plan``
refuses a file whose signature does not match: an edited plan, a plan from another host, or a
review-only ``plan --state`` plan (never signed) is not applied.

The key is made on first use: 32 random bytes, hex, in ``/var/lib/vmreconcile/plan.key``
(under ``--root``, inside DIR), mode 0600, created exclusively so that two concurrent ``plan
--out`` runs agree on one key. Its directory is checked before every use (`statedir`: a real
directory, not a symlink, owned by the user running vmreconcile, writable by nobody else, made
and kept 0700). A key file that is a symlink, not a regular file, not owned by the user running
vmreconcile, or readable or writable by anybody else is refused rather than used.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat

from ..host import Host
from ..statedir import StateDirError, state_dir

KEY_FILE = "/var/lib/vmreconcile/plan.key"
_KEY_HEX_LENGTH = 64


class PlanKeyError(OSError):
    """The plan key cannot be made or used; the message names the file."""


def key_path(host: Host) -> str:
    return host.fspath(KEY_FILE)


def plan_key(host: Host, *, create: bool) -> bytes:
    """The host's plan key; made first when ``create`` and there is none yet."""
    path = key_path(host)
    try:
        directory = state_dir(host, create=create, purpose="the plan key")
    except StateDirError as exc:
        raise PlanKeyError(exc.errno, exc.strerror) from None
    key = _read_key(path) if directory is not None else None
    if key is not None:
        return key
    if not create:
        raise PlanKeyError(errno.ENOENT, f"{path}: there is no plan key on this host, so no plan file was made here")
    _make_key(path)
    key = _read_key(path)
    if key is None:  # pragma: no cover - removed between the link and the read
        raise PlanKeyError(errno.ENOENT, f"{path}: the plan key vanished while it was made")
    return key


def sign(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify(key: bytes, payload: bytes, signature: object) -> bool:
    """True when ``signature`` is the HMAC of ``payload`` (compared in constant time)."""
    return isinstance(signature, str) and hmac.compare_digest(sign(key, payload), signature)


def _read_key(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PlanKeyError(exc.errno, f"{path}: cannot use the plan key: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PlanKeyError(errno.EINVAL, f"{path}: the plan key is not a regular file; refusing it")
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise PlanKeyError(
                errno.EPERM,
                f"{path}: the plan key must be owned by uid {os.geteuid()} with mode 0600 "
                f"(it is uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}); refusing it",
            )
        text = os.read(fd, _KEY_HEX_LENGTH + 2).strip()
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != _KEY_HEX_LENGTH // 2:
        raise PlanKeyError(errno.EINVAL, f"{path}: not a plan key (64 hex digits); remove it to make a new one")
    return key


def _make_key(path: str) -> None:
    """Write a fresh key to a temp file and link it into place: the first linker wins (its
    directory was made and checked by `statedir.state_dir`)."""
    temp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(_KEY_HEX_LENGTH // 2) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another plan --out made it first: use that one
    finally:
        os.unlink(temp)
