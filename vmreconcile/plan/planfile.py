"""Saved plans (``plan --out FILE``, ``apply --plan FILE``): authenticated, and only a record.

A plan file holds the desired state apply will write, fresh password hashes included, so it
is created with mode 0600 and never printed. It is signed with the host's plan key
(`plankey`, HMAC-SHA256 over the canonical JSON of everything else in the file): an edited
file, or one made on another host, is refused before anything in it is used. A plan made
with ``plan --state`` (against a snapshot, for review) is never signed, so it can never be
applied, whatever its ``offline`` flag says.

What the file says is a record, not an instruction: apply recomputes the changes from the
recorded desired state and the live host and refuses any difference, and takes the safety
brake's counts and the tables' digests from the live host, never from the file. So the file
holds neither (``live_entry_counts`` and ``table_digests`` are not written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import write_file
from ..showjson import state_from_json, state_to_json
from ..tables import UnsafeFile, read_bounded
from .changes import PLAN_FORMAT_VERSION, Change, Plan
from .plankey import sign, verify

PLAN_KIND = "vmreconcile-plan"
SIGNATURE = "signature"
SIGNATURE_ALGORITHM = "hmac-sha256"
#: A plan of 100,000 users is some tens of MB; a bigger file is not read.
PLAN_FILE_LIMIT = 512 * 1024 * 1024


class PlanFileError(ValueError):
    """The file is not a plan this host may apply; the message says why."""


def plan_to_document(plan: Plan) -> dict[str, Any]:
    doc = plan.to_json()  # includes live_checksum
    doc.pop("errors", None)  # a plan with errors is never saved
    doc["kind"] = PLAN_KIND
    doc["changes"] = [{**c.to_json(), "domain": c.domain, "target": c.target} for c in plan.changes]
    doc["desired"] = state_to_json(plan.desired)
    doc["reload_command"] = plan.reload_command
    doc["changeable"] = list(plan.changeable) if plan.changeable is not None else None
    doc["purge_mailboxes"] = plan.purge_mailboxes
    doc["targets"] = list(plan.targets) if plan.targets is not None else None
    doc["offline"] = plan.offline
    return doc


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a signature covers: every key but the signature, sorted, ASCII-only JSON (so
    the bytes do not depend on how the file was indented or encoded)."""
    body = {k: v for k, v in doc.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def plan_from_document(doc: Any) -> Plan:
    if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
        raise PlanFileError("not a vmreconcile plan file")
    if doc.get("format_version") != PLAN_FORMAT_VERSION:
        raise PlanFileError(f"plan format_version {doc.get('format_version')!r} is not {PLAN_FORMAT_VERSION}")
    try:
        changes = tuple(
            Change(
                action=c["action"],
                type=c["type"],
                address=c["address"],
                part=c["part"],
                before=c["before"],
                after=c["after"],
                domain=c.get("domain"),
                target=c.get("target"),
            )
            for c in doc["changes"]
        )
        changeable = doc.get("changeable")
        return Plan(
            changes=changes,
            desired=state_from_json(doc["desired"]),
            live_checksum=doc["live_checksum"],
            notes=tuple(doc.get("notes", ())),
            reload_command=doc.get("reload_command"),
            changeable=tuple(changeable) if changeable is not None else None,
            purge_mailboxes=bool(doc.get("purge_mailboxes")),
            targets=tuple(doc["targets"]) if doc.get("targets") is not None else None,
            offline=bool(doc.get("offline")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"malformed plan file: {exc}") from None


def save_plan(plan: Plan, path: Path, key: bytes | None) -> None:
    """Write the plan file with mode 0600 from the start (it carries fresh hashes), signed with
    ``key``; ``key`` None (a ``plan --state`` plan) leaves it unsigned, for review only."""
    doc = plan_to_document(plan)
    if key is not None:
        doc[SIGNATURE] = {"algorithm": SIGNATURE_ALGORITHM, "value": sign(key, canonical(doc))}
    data = json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8", "surrogateescape")
    write_file(path, data, mode=0o600)


def read_plan_document(path: Path) -> dict[str, Any]:
    """The file's JSON object, read bounded (a FIFO or a huge file is refused, not read)."""
    try:
        raw = read_bounded(path, limit=PLAN_FILE_LIMIT, follow_symlinks=True)
    except UnsafeFile as exc:
        raise PlanFileError(str(exc.strerror or exc)) from None
    if raw is None:
        raise PlanFileError(f"{path}: No such file or directory")
    try:
        doc = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise PlanFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
        raise PlanFileError(f"{path}: not a vmreconcile plan file")
    return doc


def load_plan(path: Path, key: Callable[[], bytes]) -> Plan:
    """The plan in ``path`` once its signature is checked against the host's key (``key()`` is
    called only for a signed file); `PlanFileError` for an unsigned (review-only) plan and for
    any file changed since ``plan --out`` wrote it."""
    doc = read_plan_document(path)
    signature = doc.get(SIGNATURE)
    if signature is None:
        raise PlanFileError(
            f"{path}: this plan is not signed: it was made against a saved state (plan --state), for "
            "review only, or not by vmreconcile on this host; make the plan on the host to apply it"
        )
    value = signature.get("value") if isinstance(signature, dict) else None
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise PlanFileError(f"{path}: unknown signature; refusing to apply it")
    if not verify(key(), canonical(doc), value):
        raise PlanFileError(
            f"{path}: the plan file was changed after it was made, or made on another host (its "
            "signature does not match this host's plan key); refusing to apply it"
        )
    plan = plan_from_document(doc)
    if plan.offline:
        raise PlanFileError(f"{path}: this plan was made against a saved state (plan --state), for review only")
    return plan
