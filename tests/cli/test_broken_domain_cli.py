"""One tenant's broken home does not hide the other domains from `show`, nor stop `--domain`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import TREE_GID, TREE_UID, build_step_root, own_home


def vmr(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "vmreconcile", "--root", str(root), *args], capture_output=True, text=True
    )


@pytest.fixture
def host(tmp_path):
    """mydomain.org as VMailMgr left it, and broken.example whose table is not a cdb."""
    root = tmp_path / "root"
    build_step_root("03-vaddalias", root, uid=TREE_UID, gid=TREE_GID)
    with (root / "etc/passwd").open("a") as fp:
        fp.write(f"vbase2:x:{TREE_UID + 1}:{TREE_GID + 1}::/home/vbase2:/bin/sh\n")
    home = root / "home/vbase2"
    (home / "users").mkdir(parents=True)
    (home / "passwd.cdb").write_bytes(b"not a cdb table")
    (home / ".qmail-default").write_text("|/usr/local/bin/vdeliver\n")
    home.chmod(0o700)
    own_home(home, TREE_UID + 1, TREE_GID + 1)
    with (root / "var/qmail/control/virtualdomains").open("a") as fp:
        fp.write("broken.example:vbase2\n")
    with (root / "var/qmail/control/rcpthosts").open("a") as fp:
        fp.write("broken.example\n")
    return root


def test_show_prints_the_readable_domains_and_names_the_broken_one(host):
    result = vmr(host, "show")
    assert result.returncode == 1
    assert "mydomain.org" in result.stdout
    assert "broken.example" not in result.stdout
    assert "domain broken.example (base user vbase2)" in result.stderr
    assert "--domain DOMAIN" in result.stderr
    assert result.stderr.count("\n") == 1


def test_show_of_a_healthy_domain_does_not_read_the_broken_one(host):
    result = vmr(host, "show", "--domain", "mydomain.org")
    assert result.returncode == 0, result.stderr
    assert "mydomain.org" in result.stdout and result.stderr == ""


def test_a_json_snapshot_is_never_partial(host):
    result = vmr(host, "show", "--format", "json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "broken.example" in result.stderr
    assert vmr(host, "show", "--format", "json", "--domain", "mydomain.org").returncode == 0


def test_export_refuses_a_host_with_a_broken_domain_but_exports_a_healthy_one(host, tmp_path):
    result = vmr(host, "export")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "domain broken.example (base user vbase2)" in result.stderr
    one = vmr(host, "export", "--domain", "mydomain.org")
    assert one.returncode == 0, one.stderr
    assert "mydomain.org:" in one.stdout and "broken.example" not in one.stdout
    config = tmp_path / "one.yaml"
    config.write_text(one.stdout)
    planned = vmr(host, "plan", "--domain", "mydomain.org", "--detailed-exitcode", str(config))
    assert planned.returncode == 0, planned.stdout + planned.stderr


def test_show_names_every_broken_domain(host):
    with (host / "var/qmail/control/virtualdomains").open("a") as fp:
        fp.write("gone.example:nosuchuser\n")
    result = vmr(host, "show")
    assert result.returncode == 1
    assert "broken.example" in result.stderr and "gone.example" in result.stderr
    assert "(2 domains cannot be read)" in result.stderr


def test_show_of_a_host_whose_only_domain_is_broken_does_not_say_there_are_none(host):
    result = vmr(host, "show", "--domain", "broken.example")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "domain broken.example (base user vbase2)" in result.stderr
