"""The ``show --format json`` document: a documented contract (``schemas/show.schema.json``).

It carries the full live state, so a saved copy can be planned against later (``plan --state``)
without root on the mail host. `state_to_json` and `state_from_json` are inverses; with
``redact=True`` each password hash becomes ``sha256:<hex digest of the hash string>`` (still
enough to detect a changed literal hash, never enough to attack one).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .model import FORMAT_VERSION, USER_FIELDS, Domain, HostState, VirtualUser, to_bytes

REDACTED_PREFIX = "sha256:"


class StateDocumentError(ValueError):
    """A saved state document that is not a ``show --format json`` of this format version."""


def redact_hash(password: str) -> str:
    """The digest that stands in for a hash in redacted output (``*``/empty kept: they are not secrets)."""
    if password in ("", "*") or password.startswith(REDACTED_PREFIX):
        return password
    return REDACTED_PREFIX + hashlib.sha256(to_bytes(password)).hexdigest()


def user_to_json(user: VirtualUser, redact: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(user, name) for name in USER_FIELDS}
    doc["forwards"] = list(user.forwards)
    if redact:
        doc["password"] = redact_hash(user.password)
    return doc


def domain_to_json(domain: Domain, redact: bool = False) -> dict[str, Any]:
    return {
        "name": domain.name,
        "base_user": domain.base_user,
        "wildcard": domain.wildcard,
        "domain_aliases": list(domain.domain_aliases),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in domain.options.items()},
        "qmail_default": domain.qmail_default,
        "maildirs": sorted(domain.maildirs),
        "users": [user_to_json(u, redact) for u in domain.users],
    }


def state_to_json(state: HostState, redact: bool = False, domain: str | None = None) -> dict[str, Any]:
    """The document for ``state`` (only ``domain`` when given)."""
    domains = [d for d in state.domains if domain is None or d.name == domain]
    return {
        "format_version": state.format_version,
        "redacted": redact,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in state.options.items()},
        "control": {k: list(v) for k, v in state.control.items()},
        "domains": [domain_to_json(d, redact) for d in domains],
    }


def _options(doc: dict[str, Any]) -> dict[str, str | tuple[str, ...]]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}


def state_from_json(doc: dict[str, Any]) -> HostState:
    """Rebuild the `HostState` a document describes (for ``plan --state``)."""
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise StateDocumentError(f"not a vmreconcile show document of format_version {FORMAT_VERSION}")
    try:
        domains = tuple(
            Domain(
                name=d["name"],
                base_user=d["base_user"],
                wildcard=bool(d["wildcard"]),
                domain_aliases=tuple(d["domain_aliases"]),
                options=_options(d.get("options", {})),
                qmail_default=d.get("qmail_default"),
                maildirs=frozenset(d.get("maildirs", ())),
                users=tuple(
                    VirtualUser(**{**{k: u[k] for k in USER_FIELDS}, "forwards": tuple(u["forwards"])})
                    for u in d["users"]
                ),
            )
            for d in doc["domains"]
        )
        return HostState(
            options=_options(doc.get("options", {})),
            control={k: tuple(v) for k, v in doc.get("control", {}).items()},
            domains=domains,
        )
    except (KeyError, TypeError) as exc:
        raise StateDocumentError(f"malformed state document: {exc}") from None
