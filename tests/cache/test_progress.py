"""The progress line: on a terminal only, only after DELAY, erased before the plan is printed."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

from vmreconcile.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_shown_before_the_delay_and_the_line_is_erased_after():
    out, clock = Terminal(), Clock()
    progress = Progress(out, delay=1.0, clock=clock)
    progress.stage("reading the host's domains")
    progress(10, 1000)
    assert out.getvalue() == ""
    clock.now += 1.5
    progress(500, 1000)
    assert out.getvalue().endswith("reading the host's domains: 500/1,000")
    progress.finish()
    assert out.getvalue().endswith("\r\033[K")


def test_nothing_is_shown_when_the_stream_is_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, delay=0.0, clock=clock)
    clock.now += 5
    progress.stage("reading")
    progress(1, 2)
    progress.finish()
    assert out.getvalue() == ""


def test_updates_are_rate_limited_but_the_last_one_is_shown():
    out, clock = Terminal(), Clock()
    progress = Progress(out, delay=0.0, clock=clock)
    progress.stage("x")
    clock.now += 1
    for done in range(1, 1001):
        progress(done, 1000)
    assert out.getvalue().count("\r") <= 3
    assert out.getvalue().endswith("x: 1,000/1,000")


def test_a_plan_piped_into_a_file_has_no_progress_and_one_on_a_terminal_prints_none_when_quick(tmp_path):
    """The whole command: stderr a pipe, then a real pseudo-terminal; a quick plan shows nothing."""
    config = tmp_path / "mail.yaml"
    config.write_text("domains: {}\n")
    (tmp_path / "var/qmail/control").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    command = [sys.executable, "-m", "vmreconcile", "--root", str(tmp_path), "plan", str(config)]
    piped = subprocess.run(command, capture_output=True, text=True, check=False)
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=follower, check=False)
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"\r" not in shown, shown
