"""examples/systemd/vauthd.socket and vauthd.service pass systemd's own checks.

``systemd-analyze verify`` on the shipped units (ExecStart pointed at a real installed
launcher, as install-runtime writes it), and ``systemd-analyze security --offline`` keeps the
sandbox at the level docs/dovecot.md states. Running them needs systemd as PID 1, which the
test machines lack: how vauthd behaves under the units' user and capability is tested by
test_vauthd_dovecot.py, which reproduces them with setpriv.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from vauthdkit import SERVICE_UNIT, SHIPPED_LAUNCHER, SOCKET_UNIT, SocketUnit

from vmreconcile.install import install_runtime

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (Debian's systemd package)")


@pytest.fixture
def units(tmp_path):
    install_runtime(tmp_path / "bin", libdir=tmp_path / "lib", programs=("vauthd",))
    service = SERVICE_UNIT.read_text()
    assert service.count("ExecStart=" + SHIPPED_LAUNCHER) == 1
    (tmp_path / "vauthd.service").write_text(service.replace(SHIPPED_LAUNCHER, str(tmp_path / "bin" / "vauthd")))
    shutil.copy(SOCKET_UNIT, tmp_path / "vauthd.socket")
    return tmp_path


def test_systemd_analyze_verify_is_clean(units):
    done = subprocess.run(
        [ANALYZE, "verify", "vauthd.socket", "vauthd.service"], cwd=units, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


def test_sandbox_exposure_stays_low(units):
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", "vauthd.service"],
        cwd=units,
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for vauthd.service: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 1.5, done.stdout


def test_socket_is_for_dovecot_only():
    unit = SocketUnit()
    assert (unit.user, unit.mode) == ("dovecot", 0o600)
    assert unit.path.startswith("/run/vauthd/")  # not /run/vmreconcile: apply's lock directory stays root-only
