"""The Debian package end to end, as root on this machine: build, install, use, remove, purge.

bin/package builds the .deb twice (from two fresh copies of the tree: the same bytes) and runs
lintian; ``apt-get install`` installs it with Debian's python3-* libraries; then, with no venv
and no checkout on any path: the demo, a real login through /usr/lib/vmreconcile/checkvpw and a
delivery through vdeliver (a throwaway system user as the base user, real /etc/vmailmgr and
/var/qmail/control, made for the test and removed again), the man pages, the units
(``systemd-analyze verify``) and the opt-in dpkg-divert helper. ``apt-get remove`` and
``purge`` must then leave no file of the package, no diversion and no state behind.

It changes the machine, so it runs only when asked (bin/test does, as root, once, with
VMRECONCILE_TEST_PACKAGE=1); it purges a vmreconcile package left by an earlier run first.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.checkout_cli import REPO
from vmreconcile.install import INSTALLED_PROGRAMS

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("VMRECONCILE_TEST_PACKAGE") != "1",
        reason="installs the .deb system-wide: bin/test runs it as root with VMRECONCILE_TEST_PACKAGE=1",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root; CI runs as root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs Debian's apt-get and dpkg"),
]

#: What the login and delivery part creates on the real system; removed again at the end.
SYSTEM_PATHS = (Path("/etc/vmailmgr"), Path("/var/qmail"), Path("/run/vmreconcile"))
#: Where a package could leave files or state; scanned for anything named after it.
SCANNED = ("/etc", "/usr", "/lib", "/var", "/opt")
SCAN_SKIPPED = ("/var/log", "/var/tmp", "/var/cache/apt")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}
DOMAIN = "pkgtest.example"
PASSWORD = "s3cret pass"


def run(*command: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("env", CLEAN_ENV)
    kw.setdefault("cwd", "/")
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kw)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def apt_get(*args: str) -> None:
    run(
        "apt-get",
        "-o",
        "DPkg::Lock::Timeout=600",
        "-y",
        "-q",
        *args,
        env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"},
    )


def installed() -> bool:
    done = run("dpkg-query", "-W", "-f=${Status}", "vmreconcile", check=False)
    return done.returncode == 0 and "not-installed" not in done.stdout


def named_after_the_package() -> set[str]:
    found = set()
    for top in SCANNED:
        for directory, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if os.path.join(directory, d) not in SCAN_SKIPPED]
            found.update(os.path.join(directory, n) for n in dirs + files if "vmreconcile" in n)
    return found


def diversions() -> list[str]:
    listing = run("dpkg-divert", "--list").stdout.splitlines()
    return [line for line in listing if line.endswith(" by vmreconcile")]


def build(outdir: Path, *options: str) -> Path:
    run(str(REPO / "bin" / "package"), "--outdir", str(outdir), *options, cwd=str(REPO))
    debs = list(outdir.glob("vmreconcile_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def test_the_package_builds_the_same_bytes_installs_works_and_purges_without_a_trace(tmp_path):
    if installed():
        apt_get("purge", "vmreconcile")
    assert not diversions()
    deb = build(tmp_path / "a")  # with lintian: warnings and errors fail the build
    again = build(tmp_path / "b", "--no-lintian")
    assert deb.name == again.name and deb.read_bytes() == again.read_bytes(), "two builds differ"

    existing_system_paths = {p for p in SYSTEM_PATHS if os.path.lexists(p)}
    before = named_after_the_package()
    apt_get("install", "--no-install-recommends", str(deb))
    files = run("dpkg-query", "-L", "vmreconcile").stdout.splitlines()
    try:
        assert all(os.path.lexists(path) for path in files)
        check_layout(files)
        check_packaged_libraries_only()
        check_demo(tmp_path)
        check_man_pages()
        check_units()
        if existing_system_paths:  # a real mail host: never touch its configuration
            pytest.fail(f"{sorted(map(str, existing_system_paths))} exist: run this test on a machine without them")
        check_login_and_delivery()
        check_divert_helper_and_its_undoing_on_removal()
    finally:
        for path in SYSTEM_PATHS:
            if path not in existing_system_paths:
                shutil.rmtree(path, ignore_errors=True)
        if installed():
            apt_get("remove", "vmreconcile")
    left = [p for p in shipped_non_directories(deb) if os.path.lexists(p)]
    assert left == [], f"apt-get remove left {left}"
    apt_get("purge", "vmreconcile")
    assert not installed()
    assert not diversions()
    directories = [p for p in files if p != "/." and p not in shipped_non_directories(deb)]
    left = [p for p in directories if os.path.lexists(p) and run("dpkg-query", "-S", p, check=False).returncode != 0]
    assert left == [], f"files of the package left after purge: {left}"
    assert named_after_the_package() - before == set(), "purge left state named after the package"


def shipped_non_directories(deb: Path) -> list[str]:
    """The files and symlinks in the package (dpkg -L does not tell them from directories)."""
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return sorted("/" + m.name.removeprefix("./") for m in archive.getmembers() if not m.isdir())


def check_layout(files: list[str]) -> None:
    assert [p for p in files if p.startswith("/usr/bin/")] == ["/usr/bin/vmreconcile"]
    for program in INSTALLED_PROGRAMS:
        launcher = Path("/usr/lib/vmreconcile") / program
        assert os.access(launcher, os.X_OK), launcher
        assert launcher.read_text().startswith("#!/usr/bin/python3 -IS\n")
        assert f"/usr/share/man/man8/{program}.8.gz" in files
    assert Path("/usr/lib/vmreconcile/python/vmreconcile/runtime/launch.py").is_file()
    assert "/usr/share/man/man1/vmreconcile.1.gz" in files and "/usr/share/man/man5/vmreconcile.yaml.5.gz" in files
    assert Path("/usr/share/bash-completion/completions/vmreconcile").is_file()
    assert Path("/usr/share/doc/vmreconcile/examples/howto.yaml").is_file()
    assert Path("/lib/systemd/system/vmreconcile-apply.timer").is_file()
    enabled = run("find", "/etc/systemd", "-name", "vmreconcile*").stdout
    assert enabled == "", f"units were enabled: {enabled}"


def check_packaged_libraries_only() -> None:
    """The CLI's modules, vmreconcile's and its libraries', all come from Debian's packages."""
    code = (
        "import sys, vmreconcile.cli.main, vmreconcile.desired.schema, fastjsonschema;"
        "print('\\n'.join(sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)})))"
    )
    paths = run("/usr/bin/python3", "-c", code).stdout.split()
    assert paths
    outside = [p for p in paths if not p.startswith(("/usr/lib/python3/dist-packages/", "/usr/lib/python3.11/"))]
    assert outside == [], outside
    assert "/usr/lib/python3/dist-packages/typer/main.py" in paths
    assert run("vmreconcile", "--version").stdout.strip().startswith("vmreconcile ")


def check_demo(tmp_path: Path) -> None:
    done = run("vmreconcile", "demo", str(tmp_path / "demo"))
    assert "Apply complete" in done.stdout and "No changes. The host matches the configuration." in done.stdout


def check_man_pages() -> None:
    env = {**CLEAN_ENV, "MANWIDTH": "100"}  # not man's default width: man-db keeps no formatted copy
    for page in ("vmreconcile", "vmreconcile.yaml", *INSTALLED_PROGRAMS):
        done = run("man", "--warnings", "-P", "cat", page, env=env)
        assert done.stderr == "" and "SEE ALSO" in done.stdout, page


def check_units() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian: systemd)")
    units = sorted(str(p) for p in Path("/lib/systemd/system").glob("vmreconcile*"))
    assert len(units) >= 2
    # verify runs man for Documentation=man:...; at man's default width man-db would keep a
    # formatted copy in /var/cache/man, which the purge check would rightly find.
    done = run("systemd-analyze", "verify", *units, check=False, env={**CLEAN_ENV, "MANWIDTH": "100"})
    assert done.returncode == 0 and done.stderr == "", done.stderr


def base_user() -> tuple[str, Path]:
    name = "vmrpkg" + os.urandom(3).hex()
    top = Path(tempfile.mkdtemp(prefix="vmrpkg-", dir="/tmp"))
    top.chmod(0o755)
    home = top / name
    run("useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", "--user-group", name)
    home.mkdir(mode=0o700)
    shutil.chown(home, name, name)
    return name, home


def remove_user(name: str, home: Path) -> None:
    run("userdel", "--force", name, check=False)
    run("groupdel", name, check=False)
    shutil.rmtree(home.parent, ignore_errors=True)


def login(user: str, password: str, **env: str) -> subprocess.CompletedProcess[str]:
    """checkvpw as qmail-popup runs it: login data on fd 3, the next program and 'Maildir'."""
    read, write = os.pipe()
    os.write(write, f"{user}\0{password}\0stamp\0".encode())
    os.close(write)
    script = 'printf "%s %s %s %s" "$VUSER" "$USER" "$(id -un)" "$1"'
    try:
        return subprocess.run(
            ["/usr/lib/vmreconcile/checkvpw", "/bin/sh", "-c", script, "sh", "Maildir"],
            capture_output=True,
            text=True,
            env={**CLEAN_ENV, **env},
            pass_fds=(3,),
            preexec_fn=lambda: os.dup2(read, 3),
            cwd="/",
            timeout=60,
        )
    finally:
        os.close(read)


def check_login_and_delivery() -> None:
    name, home = base_user()
    try:
        Path("/var/qmail/control").mkdir(parents=True)
        Path("/var/qmail/control/locals").write_text("localhost\n")
        config = home.parent / "mail.yaml"
        config.write_text(
            "version: 1\nqmail:\n  root: /var/qmail\nruntime:\n  bindir: /usr/lib/vmreconcile\n"
            f"domains:\n  {DOMAIN}:\n    base_user: {name}\n    users:\n      me:\n"
            "        password: {env: ME_PASSWORD}\n"
        )
        run("vmreconcile", "apply", str(config), "--yes", env={**CLEAN_ENV, "ME_PASSWORD": PASSWORD})
        assert (home / ".qmail-default").read_text() == "|/usr/lib/vmreconcile/vdeliver\n"

        ok = login(f"me@{DOMAIN}", PASSWORD)
        assert (ok.returncode, ok.stdout) == (0, f"me {name} {name} ./users/me"), ok.stderr
        assert login(f"me@{DOMAIN}", "wrong").returncode == 1

        evil = home.parent / "evil" / "vmreconcile"  # -I: PYTHONPATH must not reach the launcher
        evil.mkdir(parents=True)
        (evil / "__init__.py").write_text("raise SystemExit('injected')\n")
        hostile = login(f"me@{DOMAIN}", PASSWORD, PYTHONPATH=str(evil.parent), PYTHONSTARTUP=str(evil / "__init__.py"))
        assert hostile.returncode == 0 and "injected" not in hostile.stderr

        delivered = subprocess.run(
            ["setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups", "/usr/lib/vmreconcile/vdeliver"],
            input="Subject: packaged\n\nhello from the package test\n",
            capture_output=True,
            text=True,
            cwd=str(home),
            env={
                **CLEAN_ENV,
                "HOME": str(home),
                "USER": name,
                "EXT": "me",
                "HOST": DOMAIN,
                "SENDER": "sender@example.org",
                "UFLINE": "From sender@example.org Tue Nov 24 18:54:20 2026\n",
                "RPLINE": "Return-Path: <sender@example.org>\n",
                "DTLINE": f"Delivered-To: {name}-me@{DOMAIN}\n",
            },
            timeout=60,
        )
        assert delivered.returncode == 0, delivered.stdout + delivered.stderr
        messages = list((home / "users" / "me" / "new").iterdir())
        assert len(messages) == 1 and "hello from the package test" in messages[0].read_text()
    finally:
        remove_user(name, home)


def check_divert_helper_and_its_undoing_on_removal() -> None:
    """vmailmgr-divert puts checkvpw at /usr/bin/checkvpw on request; removing the package undoes it."""
    helper = "/usr/lib/vmreconcile/vmailmgr-divert"
    theirs = Path("/usr/bin/checkvpw")
    if os.path.lexists(theirs):
        pytest.fail("/usr/bin/checkvpw exists: run this test on a machine without VMailMgr")
    theirs.write_text("#!/bin/sh\necho vmailmgr\n")  # stands for VMailMgr's program
    try:
        assert run(helper, "add", "nosuchprogram", check=False).returncode == 1
        assert run(helper, "add", "vmreconcile-apply", check=False).returncode == 1  # not a runtime program
        run(helper, "add", "checkvpw")
        assert os.readlink(theirs) == "/usr/lib/vmreconcile/checkvpw"
        assert Path("/usr/bin/checkvpw.vmailmgr").read_text() == "#!/bin/sh\necho vmailmgr\n"
        assert run(helper, "list").stdout.split() == ["checkvpw"]
        run(helper, "add", "checkvpw")  # twice is fine
        run(helper, "remove", "checkvpw")
        assert theirs.read_text() == "#!/bin/sh\necho vmailmgr\n" and not diversions()
        run(helper, "add", "checkvpw")
        apt_get("remove", "vmreconcile")  # postrm gives VMailMgr's program its name back
        assert not theirs.is_symlink() and theirs.read_text() == "#!/bin/sh\necho vmailmgr\n"
        assert not os.path.lexists("/usr/bin/checkvpw.vmailmgr") and not diversions()
    finally:
        if diversions():
            run("dpkg-divert", "--package", "vmreconcile", "--remove", "--rename", str(theirs), check=False)
        if theirs.is_symlink() or (theirs.is_file() and "echo vmailmgr" in theirs.read_text()):
            theirs.unlink()
