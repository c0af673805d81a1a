"""The pure planner: (desired `HostState`, live `HostState`) -> ordered `Change`s.

Drift is computed field by field with our own comparison, not deepdiff. The models are flat,
frozen records whose fields are known in advance (``USER_FIELDS``), so a generic deep diff
buys nothing but cost and paths we would have to translate back: deepdiff on 100,000 users
takes tens of seconds, while comparing two frozen dataclasses is one ``==`` and the common
"nothing changed" case short-circuits per domain. Our own diff also decides the addresses
(``mydomain.org/me``, ``control/virtualdomains/mydomain.org``) and masks hashes at the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..formats import control as ctl
from ..formats.config import PASSWD_CHANGEABLE
from ..model import USER_FIELD_TABLE, USER_FIELDS, Domain, HostState, VirtualUser
from .changes import Action, Change, ChangeType, mask_password
from .resolve import live_counterparts

_USER_DIFF_FIELDS = tuple(f for f in USER_FIELDS if f != "name")
#: Fields a plan never shows as they are: hashes become fingerprints (`mask_password`).
_MASKED_FIELDS = frozenset(f.name for f in USER_FIELD_TABLE if f.unit == "hash")


def json_value(value: Any) -> Any:
    if isinstance(value, tuple | frozenset):
        return list(value)
    return value


def user_fields(user: VirtualUser, only: tuple[str, ...] = _USER_DIFF_FIELDS) -> dict[str, Any]:
    """JSON-ready fields of an entry, the hash masked."""
    out = {}
    for name in only:
        value = getattr(user, name)
        out[name] = mask_password(value) if name in _MASKED_FIELDS else json_value(value)
    return out


def entry_type(user: VirtualUser) -> ChangeType:
    return "alias" if user.is_alias else "user"


def diff_users(desired: Domain, live: Domain | None, purge_mailboxes: bool) -> list[Change]:
    changes: list[Change] = []
    live_users = {u.name: u for u in live.users} if live else {}
    desired_names = set()
    live_maildirs = live.maildirs if live else frozenset()
    for user in desired.users:
        desired_names.add(user.name)
        address = f"{desired.name}/{user.name}"
        old = live_users.get(user.name)
        if old is None:
            changes.append(
                Change(
                    action="create",
                    type=entry_type(user),
                    address=address,
                    part="tables",
                    before={},
                    after=user_fields(user),
                    domain=desired.name,
                    target=user.name,
                )
            )
        elif old != user:
            fields = tuple(f for f in _USER_DIFF_FIELDS if getattr(old, f) != getattr(user, f))
            changes.append(
                Change(
                    action="update",
                    type=entry_type(user),
                    address=address,
                    part="tables",
                    before=user_fields(old, fields),
                    after=user_fields(user, fields),
                    domain=desired.name,
                    target=user.name,
                )
            )
        if (
            user.has_mailbox
            and user.directory
            and user.directory not in live_maildirs
            and not user.directory.startswith("/")
        ):  # outside the home: the admin's to create
            changes.append(
                Change(
                    action="create",
                    type="maildir",
                    address=f"{address}/maildir",
                    part="tables",
                    before={},
                    after={"directory": user.directory},
                    domain=desired.name,
                    target=user.directory,
                )
            )
    for name, old in live_users.items():
        if name in desired_names:
            continue
        address = f"{desired.name}/{name}"
        changes.append(
            Change(
                action="delete",
                type=entry_type(old),
                address=address,
                part="tables",
                before=user_fields(old),
                after={},
                domain=desired.name,
                target=name,
            )
        )
        if (
            purge_mailboxes
            and old.directory in live_maildirs
            and not old.directory.startswith("/")
            and not _shared(old.directory, desired)
        ):  # mailboxes outside the home are never purged
            changes.append(
                Change(
                    action="delete",
                    type="maildir",
                    address=f"{address}/maildir",
                    part="tables",
                    before={"directory": old.directory},
                    after={},
                    domain=desired.name,
                    target=old.directory,
                )
            )
    return changes


def _shared(directory: str, desired: Domain) -> bool:
    """True when a remaining entry still uses the directory (never purge someone else's mail)."""
    return any(u.directory == directory for u in desired.users)


def diff_options(desired: Mapping[str, Any], live: Mapping[str, Any], prefix: str, domain: str | None) -> list[Change]:
    changes = []
    for name in sorted(set(desired) | set(live)):
        new, old = desired.get(name), live.get(name)
        if new == old:
            continue
        address = f"{prefix}/{name}"
        if old is None:
            changes.append(
                Change(
                    action="create",
                    type="option",
                    address=address,
                    part="runtime-config",
                    before={},
                    after={"value": json_value(new)},
                    domain=domain,
                    target=name,
                )
            )
        elif new is None:
            changes.append(
                Change(
                    action="delete",
                    type="option",
                    address=address,
                    part="runtime-config",
                    before={"value": json_value(old)},
                    after={},
                    domain=domain,
                    target=name,
                )
            )
        else:
            changes.append(
                Change(
                    action="update",
                    type="option",
                    address=address,
                    part="runtime-config",
                    before={"value": json_value(old)},
                    after={"value": json_value(new)},
                    domain=domain,
                    target=name,
                )
            )
    return changes


def diff_domain(desired: Domain, live: Domain | None) -> list[Change]:
    """The vsetup part: ``.qmail-default`` (and with it ``users/``); the table is per entry."""
    if live is not None and live.qmail_default == desired.qmail_default:
        return []
    before = {"qmail_default": live.qmail_default} if live is not None and live.qmail_default is not None else {}
    action: Action = "create" if not before else "update"
    after = {"qmail_default": desired.qmail_default, "base_user": desired.base_user}
    if action == "create":
        after["users_dir"] = "users/"
    return [
        Change(
            action=action,
            type="domain",
            address=desired.name,
            part="runtime-config",
            before=before,
            after=after,
            domain=desired.name,
            target=desired.base_user,
        )
    ]


def _keyed_lines(shape: str, lines: tuple[str, ...]) -> dict[str, list[str]]:
    """A control file as key -> its lines (virtualdomains by key, the host files by host)."""
    out: dict[str, list[str]] = {}
    for line in lines:
        key = ctl.line_key(shape, line)
        if key is not None:
            out.setdefault(key, []).append(line)
    return out


def diff_control(desired: Mapping[str, tuple[str, ...]], live: Mapping[str, tuple[str, ...]]) -> list[Change]:
    changes = []
    for file in ctl.MANAGED_FILES:
        name = file.name
        new_lines, old_lines = desired.get(name), live.get(name)
        if new_lines == old_lines or (not new_lines and not old_lines):
            continue
        new, old = _keyed_lines(file.shape, new_lines or ()), _keyed_lines(file.shape, old_lines or ())
        for key in list(new) + [k for k in old if k not in new]:
            if new.get(key) == old.get(key):
                continue
            address = f"control/{name}/{key}"
            if key not in old:
                changes.append(
                    Change(
                        action="create",
                        type="control_line",
                        address=address,
                        part="control",
                        before={},
                        after={"line": new[key][-1]},
                        domain=None,
                        target=name,
                    )
                )
            elif key not in new:
                changes.append(
                    Change(
                        action="delete",
                        type="control_line",
                        address=address,
                        part="control",
                        before={"line": old[key][-1]},
                        after={},
                        domain=None,
                        target=name,
                    )
                )
            else:
                changes.append(
                    Change(
                        action="update",
                        type="control_line",
                        address=address,
                        part="control",
                        before={"lines": old[key]},
                        after={"lines": new[key]},
                        domain=None,
                        target=name,
                    )
                )
    return changes


def diff_changeable(desired: tuple[str, ...] | None, live: tuple[str, ...] | None) -> list[Change]:
    """The authpipe's list of users whose password is ``unmanaged`` (written only when it matters).

    The authpipe asks "is this user listed?", so the order of the lines is no change: a list
    that differs only in order (an export writes users before aliases) is left as it is.
    """
    if desired is None or (live is None and not desired) or (live is not None and set(live) == set(desired)):
        return []
    name = PASSWD_CHANGEABLE
    action: Action = "create" if live is None else "update"
    return [
        Change(
            action=action,
            type="option",
            address=f"option/{name}",
            part="runtime-config",
            before={} if live is None else {"value": list(live)},
            after={"value": list(desired)},
            domain=None,
            target=name,
        )
    ]


def diff(
    desired: HostState,
    live: HostState,
    *,
    purge_mailboxes: bool = False,
    changeable: tuple[str, ...] | None = None,
    live_changeable: tuple[str, ...] | None = None,
) -> list[Change]:
    """Every change that turns ``live`` into ``desired``, in execution order.

    Live domains that ``desired`` does not hold are left alone (apply never deletes a
    domain's table). ``changeable`` is the desired authpipe list (None: not managed).
    """
    changes: list[Change] = []
    changes += diff_options(desired.options, live.options, "option", None)
    counterparts = live_counterparts(desired.domains, live)
    for domain in desired.domains:
        old = counterparts.get(domain.name)
        if old is not None and old == domain:
            continue
        changes += diff_options(domain.options, old.options if old else {}, f"option/{domain.name}", domain.name)
        changes += diff_domain(domain, old)
        changes += diff_users(domain, old, purge_mailboxes)
    changes += diff_control(desired.control, live.control)
    changes += diff_changeable(changeable, live_changeable)
    return sorted(changes, key=lambda c: c.rank)
