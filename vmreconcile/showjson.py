"""The ``show --format json`` document: a documented contract (``schemas/show.schema.json``).

It carries the full live state, so a saved copy can be planned against later (``plan --state``)
without root on the mail host. `state_to_json` and `state_from_json` are inverses; with
``redact=True`` each password hash becomes ``sha256:<hex digest of the hash string>`` (enough
to detect a changed literal hash, not enough to attack a salted one), or
``unverifiable:<scheme>`` where the string is the password in disguise (``$0$``, old MD5).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .formats.hashing import scheme_of
from .model import FORMAT_VERSION, USER_FIELD_TABLE, USER_FIELDS, Domain, HostState, VirtualUser, to_bytes

REDACTED_PREFIX = "sha256:"
#: Stands in for hashes whose digest would reveal the password (``$0$`` plaintext, old MD5).
UNVERIFIABLE_PREFIX = "unverifiable:"
#: Schemes whose stored string is the password in disguise: an unsalted digest of it is crackable.
_PLAINTEXT_EQUIVALENT = ("null-crypt", "old-md5")


class StateDocumentError(ValueError):
    """A saved state document that is not a ``show --format json`` of this format version."""


def is_redacted(stored: str) -> bool:
    """True for a value a redacted ``show`` document put in place of a hash."""
    return (stored.startswith(REDACTED_PREFIX) and len(stored) == len(REDACTED_PREFIX) + 64) or stored.startswith(
        UNVERIFIABLE_PREFIX
    )


def hash_digest(stored: str) -> str:
    """The hex sha256 of a hash string (a redacted ``sha256:`` value gives its own digest)."""
    if stored.startswith(REDACTED_PREFIX) and is_redacted(stored):
        return stored[len(REDACTED_PREFIX) :]
    return hashlib.sha256(to_bytes(stored)).hexdigest()


def redact_hash(password: str) -> str:
    """What stands in for a hash in redacted output (``*``/empty kept: they are not secrets).

    Normally ``sha256:<digest of the hash string>``: a salted crypt hash stays uncrackable and
    a changed literal hash is still detected offline. For ``$0$`` and old-MD5 entries the
    string *is* the password (or its unsalted MD5), so its digest could be looked up in a
    dictionary: those become ``unverifiable:<scheme>`` and are reported, not compared, offline.
    """
    if password in ("", "*") or is_redacted(password):
        return password
    scheme = scheme_of(password)
    if scheme in _PLAINTEXT_EQUIVALENT:
        return UNVERIFIABLE_PREFIX + scheme
    return REDACTED_PREFIX + hash_digest(password)


#: Fields held as tuples in the model and as lists in JSON; hashes (redacted on request).
_LIST_FIELDS = tuple(f.name for f in USER_FIELD_TABLE if f.unit == "addresses")
_HASH_FIELDS = tuple(f.name for f in USER_FIELD_TABLE if f.unit == "hash")


def user_to_json(user: VirtualUser, redact: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(user, name) for name in USER_FIELDS}
    for name in _LIST_FIELDS:
        doc[name] = list(doc[name])
    if redact:
        for name in _HASH_FIELDS:
            doc[name] = redact_hash(doc[name])
    return doc


def user_from_json(doc: dict[str, Any]) -> VirtualUser:
    values = {k: doc[k] for k in USER_FIELDS}
    for name in _LIST_FIELDS:
        values[name] = tuple(values[name])
    return VirtualUser(**values)


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
                users=tuple(user_from_json(u) for u in d["users"]),
            )
            for d in doc["domains"]
        )
        return HostState(
            options=_options(doc.get("options", {})),
            control={k: tuple(v) for k, v in doc.get("control", {}).items()},
            domains=domains,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise StateDocumentError(f"malformed state document: {exc}") from None
