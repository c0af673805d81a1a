"""The checksum of a live state: what a saved plan was made against (Terraform's stale-plan check)."""

from __future__ import annotations

import hashlib
import json

from ..model import HostState
from ..showjson import state_to_json


def state_checksum(state: HostState) -> str:
    """sha256 over the canonical ``show --format json`` document of ``state``.

    About a second for 100,000 entries, so plans compute it only when it is shown or saved.
    """
    doc = json.dumps(state_to_json(state), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(doc.encode("utf-8", "surrogateescape")).hexdigest()
