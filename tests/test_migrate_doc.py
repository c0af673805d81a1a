"""docs/migrate.md, walked: its ``sh`` blocks run in order, in one shell, on a --root copy of
tables VMailMgr's own tools made. The commands come from the document itself, so the guide
and this test cannot drift; only the two paths of its step 1 are pointed into a scratch tree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.conftest import REPO, build_step_root, requires_root

GUIDE = REPO / "docs" / "migrate.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
#: The assignments of step 1, which the test points into its scratch tree.
PATHS = "# paths: adapt these two to the host\nCONFIG=/etc/vmreconcile/config\nBINDIR=/usr/local/lib/vmreconcile/bin\n"


def sh_blocks() -> list[str]:
    return [body for language, body in BLOCK.findall(GUIDE.read_text()) if language == "sh"]


def test_the_guide_has_every_step_and_its_way_back():
    text = GUIDE.read_text()
    for heading in (
        "Export and review",
        "Commit",
        "beside the C one",
        "qmail-popup",
        "Dovecot",
        "Courier",
        "`.qmail-default`",
        "Verify",
    ):
        assert re.search(rf"^## \d+\. .*{re.escape(heading)}", text, re.M), heading
    assert text.count("Going back") + text.count("going back") >= 7
    blocks = sh_blocks()
    assert blocks[0] == PATHS  # step 1 is exactly what the walk below replaces
    assert any("install-runtime" in b for b in blocks) and any("rollback" in b for b in blocks)


@requires_root
def test_walking_the_guide_on_a_copy_of_a_vmailmgr_host(public_tmp):
    root = public_tmp / "root"
    home = build_step_root("11-after-deliveries", root)
    for path in [home, *home.rglob("*")]:  # a real host's home belongs to its base user
        os.chown(path, 1008, 1008, follow_symlinks=False)
    for directory in [public_tmp, root, root / "home"]:
        directory.chmod(0o755)
    scratch = public_tmp / "scratch"
    walk = "\n".join(
        [
            "set -eu",
            sh_blocks()[0],
            f"CONFIG={scratch}/config",
            f"BINDIR={scratch}/bin",
            *sh_blocks()[1:],
            "",
        ]
    )
    tools = public_tmp / "tools"  # `vmreconcile` as an admin runs it: this checkout, this interpreter
    tools.mkdir()
    (tools / "vmreconcile").write_text(f'#!/bin/sh\nexec {sys.executable} -m vmreconcile "$@"\n')
    (tools / "vmreconcile").chmod(0o755)
    env = {
        "PATH": f"{tools}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "HOME": str(public_tmp),
        "VMRECONCILE_ROOT": str(root),
        "GIT_AUTHOR_NAME": "admin",
        "GIT_AUTHOR_EMAIL": "admin@example.test",
        "GIT_COMMITTER_NAME": "admin",
        "GIT_COMMITTER_EMAIL": "admin@example.test",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C.UTF-8",
    }
    done = subprocess.run(["bash", "-c", walk], capture_output=True, text=True, env=env, cwd=public_tmp, timeout=600)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "No changes." in out and "No history entries." in out  # steps 2-4: adopting changes nothing
    assert "./users/me\n" in out  # step 5: a login through the new checkvpw
    assert f"|{scratch}/bin/vdeliver\n" == (home / ".qmail-default").read_text()  # step 9, applied again
    assert "Rollback complete: 0 recreated, 1 restored, 1 removed." in out
    history = subprocess.run(
        ["vmreconcile", "history", "--format", "json"], capture_output=True, text=True, env=env, check=True
    )
    entries = json.loads(history.stdout)
    assert [(e["command"], e["rollback_of"]) for e in entries] == [("apply", None), ("rollback", 1), ("apply", None)]
    assert entries[0]["commit"] and entries[0]["commit_dirty"] is False
    assert (scratch / "bin" / "checkvpw").exists()
