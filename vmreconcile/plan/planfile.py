"""Saved plans (``plan --out FILE``, ``apply --plan FILE``) and the live-state checksum.

A plan file holds the desired state apply will write, fresh password hashes included, so it
is created with mode 0600 and never printed. It also holds the checksum of the live state it
was made against: apply recomputes it from the host and refuses when the two differ
(Terraform's "saved plan is stale").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_file
from ..showjson import state_from_json, state_to_json
from .changes import PLAN_FORMAT_VERSION, Change, Plan

PLAN_KIND = "vmreconcile-plan"


class PlanFileError(ValueError):
    """The file is not a plan this version can apply."""


def plan_to_document(plan: Plan) -> dict[str, Any]:
    doc = plan.to_json()  # includes live_checksum
    doc["kind"] = PLAN_KIND
    doc["changes"] = [{**c.to_json(), "domain": c.domain, "target": c.target} for c in plan.changes]
    doc["desired"] = state_to_json(plan.desired)
    doc["live_entry_counts"] = dict(plan.live_entry_counts)
    doc["reload_command"] = plan.reload_command
    doc["changeable"] = list(plan.changeable) if plan.changeable is not None else None
    doc["purge_mailboxes"] = plan.purge_mailboxes
    doc["targets"] = list(plan.targets) if plan.targets is not None else None
    doc["table_digests"] = dict(plan.table_digests)
    doc["offline"] = plan.offline
    return doc


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
            live_entry_counts=dict(doc.get("live_entry_counts", {})),
            reload_command=doc.get("reload_command"),
            changeable=tuple(changeable) if changeable is not None else None,
            purge_mailboxes=bool(doc.get("purge_mailboxes")),
            targets=tuple(doc["targets"]) if doc.get("targets") is not None else None,
            table_digests=dict(doc.get("table_digests") or {}),
            offline=bool(doc.get("offline")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"malformed plan file: {exc}") from None


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan file with mode 0600 from the start (it carries fresh hashes)."""
    data = json.dumps(plan_to_document(plan), indent=1, ensure_ascii=False).encode("utf-8", "surrogateescape")
    write_file(path, data, mode=0o600)


def load_plan(path: Path) -> Plan:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlanFileError(f"{path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise PlanFileError(f"{path}: not JSON ({exc})") from None
    return plan_from_document(doc)
