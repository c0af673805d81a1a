"""On a terminal apply asks before writing (and shows progress); "no" writes nothing."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from tests.plan.reconcile_helpers import empty_root

REPO = Path(__file__).resolve().parents[2]
CONFIG = "domains:\n  mydomain.org:\n    base_user: myuser\n    users:\n      me: {password: null}\n"


def apply_on_a_terminal(root: Path, config: Path, answer: bytes, env: dict | None = None) -> tuple[int, str]:
    """Run apply with stdin, stdout and stderr on a pseudo-terminal; answer the prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from vmreconcile.cli.main import main; main()",
            "--root",
            str(root),
            "apply",
            str(config),
        ],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=REPO,
        close_fds=True,
        env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, **(env or {})},
    )
    os.close(follower)
    output = b""
    answered = False
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Apply these changes?" in output:
            os.write(leader, answer)
            answered = True
    os.close(leader)
    return proc.wait(timeout=30), output.decode("utf-8", "replace")


def test_apply_asks_on_a_terminal_and_no_means_nothing_is_written(tmp_path):
    root = tmp_path / "root"
    home = empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    code, output = apply_on_a_terminal(root, config, b"n\n")
    assert code == 1 and "apply cancelled; nothing was written" in output
    assert not (home / "passwd.cdb").exists()
    code, output = apply_on_a_terminal(root, config, b"y\n")
    assert code == 0, output
    assert "Apply complete:" in output
    assert re.search(r"\] (\d+)/\1 done", output)  # the progress bar reached the end
    assert "\x1b[32m+ user mydomain.org/me" in output  # colour on a terminal
    assert (home / "passwd.cdb").exists()


def test_no_color_turns_colour_off_on_a_terminal(tmp_path):
    root = tmp_path / "root"
    home = empty_root(root)
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    code, output = apply_on_a_terminal(root, config, b"y\n", env={"NO_COLOR": "1"})
    assert code == 0, output
    assert "\n+ user mydomain.org/me" in output.replace("\r\n", "\n") and "\x1b[3" not in output
    assert (home / "passwd.cdb").exists()
