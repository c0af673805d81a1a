"""A trivial runtime program: proves a launcher reaches the copied runtime and its baked root.

Prints where the runtime was loaded from, the baked root and the interpreter flags, so tests
can check isolation (``-I -S``) without any login or delivery logic.
"""

from __future__ import annotations

import os
import sys

from ..host import Host


def main(argv: list[str], host: Host) -> int:
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"package={package_dir}")
    print(f"root={host.root_str or '/'}")
    print(f"isolated={sys.flags.isolated} no_site={sys.flags.no_site}")
    print(f"uid={os.getuid()} argv={argv[1:]}")
    print(
        f"modules={','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('yaml', 'typer', 'jsonschema', 'deepdiff', 'passlib', 'site')))}"
    )
    return 0
