"""Read what is deployed on a host into one immutable `HostState`.

Sources (all through `Host`, so ``--root`` moves every one of them): the global option files in
``/etc/vmailmgr``, the qmail control files, and for each base user named in
``control/virtualdomains``: ``~/.vmailmgr/<option>``, ``~/.qmail-default``, the table
(``<password-file>.cdb``) and which user directories exist as maildirs.

Domains are grouped per base user, because VMailMgr keeps one table per base user: every
virtualdomains key that maps to the same user is one `Domain` (the first plain key is its name,
``.name`` makes it a wildcard, the other keys are domain aliases).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .formats.config import OPTIONS, stored_value
from .formats.control import CONTROL_FILES, VIRTUALDOMAINS, parse_lines, split_virtualdomain
from .host import LOCAL_CONFIG_DIR, BaseUser, Host
from .model import Domain, HostState, OptionValue, from_bytes
from .tables import iter_users, open_table, read_regular, table_path


def read_live_state(host: Host) -> HostState:
    """The whole live model. Raises on a missing base user or a corrupt table (one-line errors)."""
    control = read_control_files(host)
    domains = tuple(
        read_domain(host, base_user, keys) for base_user, keys in group_virtualdomains(control.get(VIRTUALDOMAINS, ()))
    )
    return HostState(options=read_options(host.config_dir, host.config_dir), control=control, domains=domains)


def read_control_files(host: Host) -> dict[str, tuple[str, ...]]:
    control = {}
    for name in CONTROL_FILES:
        raw = read_regular(host.control_path(name), follow_symlinks=True)
        if raw is not None:
            control[name] = parse_lines(raw)
    return control


def group_virtualdomains(lines: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(base user, [keys in file order]) in order of first appearance; later duplicates win ([compat: control-files])."""
    mapping: dict[str, str] = {}
    for line in lines:
        pair = split_virtualdomain(line)
        if pair is not None and pair[1]:
            mapping.pop(pair[0], None)
            mapping[pair[0]] = pair[1]
    groups: dict[str, list[str]] = {}
    for line in lines:  # file order of the surviving keys
        pair = split_virtualdomain(line)
        if pair is not None and mapping.get(pair[0]) == pair[1] and pair[0] not in groups.get(pair[1], []):
            groups.setdefault(pair[1], []).append(pair[0])
    return list(groups.items())


def split_domain_keys(keys: list[str]) -> tuple[str, bool, tuple[str, ...]]:
    """(name, wildcard, domain_aliases) from one base user's virtualdomains keys."""
    plain = [k for k in keys if not k.startswith(".")]
    name = plain[0] if plain else keys[0].lstrip(".")
    wildcard = "." + name in keys
    aliases = tuple(k for k in keys if k not in (name, "." + name))
    return name, wildcard, aliases


def read_options(directory: Path, host_config_dir: Path | None = None) -> dict[str, OptionValue]:
    """The option files present in ``directory`` (only VMailMgr's 22 names; hooks are ignored).

    Symlinks are followed only in the root-owned global directory (``host_config_dir``).
    """
    options: dict[str, OptionValue] = {}
    for name, option in OPTIONS.items():
        raw = read_regular(directory / name, follow_symlinks=directory == host_config_dir)
        if raw is not None:
            options[name] = stored_value(raw, option.kind)
    return options


def read_domain(host: Host, base_user_name: str, keys: list[str]) -> Domain:
    base_user = host.base_user(base_user_name)
    home = host.home(base_user)
    name, wildcard, aliases = split_domain_keys(keys)
    config = host.domain_config(base_user)
    reader = open_table(table_path(home, config.text("password-file")))
    users = tuple(iter_users(reader)) if reader is not None else ()
    qmail_default = read_regular(home / ".qmail-default")
    return Domain(
        name=name,
        base_user=base_user.name,
        wildcard=wildcard,
        domain_aliases=aliases,
        options=read_options(home / LOCAL_CONFIG_DIR),
        qmail_default=from_bytes(qmail_default) if qmail_default is not None else None,
        users=users,
        maildirs=existing_maildirs(host, base_user, users),
    )


def existing_maildirs(host: Host, base_user: BaseUser, users: tuple) -> frozenset[str]:
    """The stored directories of ``users`` that are maildirs (string paths: 100,000 users)."""
    home = host.home_str(base_user) + "/"
    found = set()
    for user in users:
        directory = user.directory
        if not directory or directory in found:
            continue
        path = host.fspath(directory) if directory.startswith("/") else home + directory
        if _is_maildir_at(path):
            found.add(directory)
    return frozenset(found)


def _is_maildir_at(path: str) -> bool:
    lstat, isdir = os.lstat, stat.S_ISDIR
    try:
        return all(isdir(lstat(p).st_mode) for p in (path, path + "/cur", path + "/new", path + "/tmp"))
    except OSError:
        return False
