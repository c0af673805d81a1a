"""Changes vmreconcile refuses to plan, because applying them would strand mail."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import build_step_root, own_home


def vmr(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "vmreconcile", "--root", str(root), *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda text: text.replace("base_user: vbase1", "base_user: vbase2"),
            "base user 'vbase1' -> 'vbase2' would move the domain's",
        ),
        (
            lambda text: text.replace("base_user: vbase1", "base_user: vbase1\n    options: {password-file: other}"),
            "password-file 'passwd' -> 'other' would leave the live table",
        ),
    ],
)
def test_moving_a_live_domains_table_is_refused(tmp_path, edit, message):
    build_step_root("03-vaddalias", tmp_path)
    with (tmp_path / "etc" / "passwd").open("a") as fp:
        fp.write("vbase2:x:1009:1009::/home/vbase2:/bin/sh\n")
    (tmp_path / "home" / "vbase2").mkdir()
    own_home(tmp_path / "home" / "vbase2", 1009, 1009)
    exported = vmr(tmp_path, "export")
    assert exported.returncode == 0, exported.stderr
    config = tmp_path / "mail.yaml"
    config.write_text(edit(exported.stdout))
    before = (tmp_path / "var/qmail/control/virtualdomains").read_text()
    result = vmr(tmp_path, "apply", str(config), "--yes")
    assert result.returncode == 1
    assert message in result.stderr
    assert (tmp_path / "var/qmail/control/virtualdomains").read_text() == before
