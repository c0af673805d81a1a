"""Domains planned before without a change, and whose inputs are the same: not resolved again.

Resolving a domain (`plan.resolve`: every YAML entry completed from its live entry) is a pure
function of the domain's spec, its live files, the global options, the YAML's settings outside
the domains, the clock (for new entries only) and the secrets. When a plan found a domain
without any change, its desired state *is* its live state. This memo keeps, per domain, a key
made of all of those inputs, and a later plan whose key for that domain is the same takes the
live domain as the desired one without resolving it (`resolve(unchanged=...)`):

* the routing: the live domain has the YAML's base user, wildcard and aliases (a change of
  these is a change of control lines, which name no domain, so "no change there" must not
  be concluded from the domain's own changes);
* the spec: ``Spec.digests``, the configuration cache's digest of the domain's YAML and of
  everything else its check depends on (the rest of the files, the code, ...; a domain without
  one is resolved);
* the live files: `LiveCache.fingerprint` (the table's and the maildirs' keys, known only when
  they are settled), and the values of the domain's option files, ``.qmail-default``, name,
  base user, wildcard and aliases, and of the global options in ``/etc/vmailmgr``;
* the clock matters only for entries to be created, and a domain without a change had none;
* secrets: a domain with a ``{env:}`` or ``{file:}`` password is never kept (the secret may
  change with nothing else), and plans against a snapshot (``--state``) do not use the memo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..desired.spec import DomainSpec, PasswordSpec, Spec
from ..model import Domain, HostState
from ..plan.changes import Plan
from .livestate import LiveCache
from .store import CacheStore

NAME = "resolved"
FORMAT = 1
#: Keys kept per domain: a host planned with two configurations (a checkout and a pull
#: request's) keeps both.
KEPT_KEYS = 4


class ResolveMemo:
    """The memo of one run: `unchanged` before the plan is made, `remember` and `save` after."""

    def __init__(self, store: CacheStore | None) -> None:
        self._store = store
        body = store.load(NAME) if store is not None else None
        self._old: dict[str, tuple[bytes, ...]] = {}
        if type(body) is dict:
            self._old = {
                name: keys
                for name, keys in body.items()
                if type(name) is str and type(keys) is tuple and all(type(k) is bytes for k in keys)
            }
        self._new: dict[str, bytes] = {}

    def unchanged(self, spec: Spec, live: HostState, cache: LiveCache | None) -> frozenset[str]:
        """The domains of ``spec`` whose inputs are those of a plan that changed nothing there."""
        if cache is None:
            return frozenset()
        keys = _keys(spec.domains, spec, live, cache)
        return frozenset(name for name, key in keys.items() if key is not None and key in self._old.get(name, ()))

    def remember(self, plan: Plan, spec: Spec, live: HostState, cache: LiveCache | None) -> None:
        """Keep the key of every domain ``plan`` planned without a change (and without secrets)."""
        if cache is None or plan.offline:
            return
        changed = {change.domain for change in plan.changes}
        planned = set(plan.targets) if plan.targets is not None else {d.name for d in spec.domains}
        quiet = [d for d in spec.domains if d.name in planned and d.name not in changed and not _has_secrets(d)]
        for name, key in _keys(quiet, spec, live, cache).items():
            if key is not None:
                self._new[name] = key

    def save(self) -> None:
        if self._store is None:
            return
        merged = dict(self._old)
        for name, key in self._new.items():
            kept = merged.get(name, ())
            if key not in kept:
                merged[name] = (key, *kept)[:KEPT_KEYS]
        if merged != self._old:
            self._store.save(NAME, merged)


def _keys(domains: Iterable[DomainSpec], spec: Spec, live: HostState, cache: LiveCache) -> dict[str, bytes | None]:
    by_name = {d.name: d for d in live.domains}
    common = repr((FORMAT, sorted(live.options.items()))).encode("utf-8", "surrogateescape")
    keys: dict[str, bytes | None] = {}
    for dspec in domains:
        digest = spec.digests.get(dspec.name)
        domain = by_name.get(dspec.name)
        files = cache.fingerprint(dspec.name) if domain is not None else None
        if digest is None or domain is None or files is None or not _routed_as_specified(dspec, domain):
            keys[dspec.name] = None
            continue
        values = (
            domain.name,
            domain.base_user,
            domain.wildcard,
            domain.domain_aliases,
            sorted(domain.options.items()),
            domain.qmail_default,
        )
        key = hashlib.sha256(digest + files + common)
        key.update(repr(values).encode("utf-8", "surrogateescape"))
        keys[dspec.name] = key.digest()
    return keys


def _routed_as_specified(dspec: DomainSpec, domain: Domain) -> bool:
    """The live domain has the base user, wildcard and aliases the YAML gives it. A plan that
    changes only these changes control lines (changes of no domain), and the memo takes the
    live domain whole: such a domain must never be remembered or taken as unchanged, or the
    routing change would vanish from every later plan."""
    return (dspec.base_user, dspec.wildcard, tuple(dspec.domain_aliases)) == (
        domain.base_user,
        domain.wildcard,
        tuple(domain.domain_aliases),
    )


def _has_secrets(dspec: DomainSpec) -> bool:
    for user in dspec.users:
        password = user.given.get("password")
        if isinstance(password, PasswordSpec) and password.kind in ("env", "file"):
            return True
    return False
