"""Digest a directory tree: path -> mode and content hash (link target for links). Stdlib only.

``python treedigest.py ROOT OUT.json`` writes the digest, so a playbook can snapshot a tree
between two tasks; equal digests mean nothing was created, removed, rewritten or re-moded.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            out[rel] = f"link {os.readlink(path)}"
        elif stat.S_ISREG(info.st_mode):
            out[rel] = f"{stat.filemode(info.st_mode)} {info.st_uid} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            out[rel] = f"{stat.filemode(info.st_mode)} {info.st_uid}"
    return out


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(tree_digest(Path(sys.argv[1])), indent=1, sort_keys=True))
