"""The release: ``python -m build`` makes an sdist and a wheel that install into a fresh venv and work.

The build is the README's *Install* command block, run as written (bash, ``set -e``) in a copy
of the working tree (building in place would write build/ and egg-info into a checkout other
processes use), with ``HOME`` pointing into the test's directory: ``python -m build`` with its
default isolation, so it is the build a release makes (sdist first, then the wheel from the
sdist, which proves the sdist is complete), then the wheel into a fresh venv. The fresh venv gets its dependencies through pip's ordinary configuration
(the package index, or the local mirror pip is configured with): there is no clean offline way
to turn the test venv's installed packages back into wheels. Everything runs from a directory
outside the checkout, with a scrubbed environment, so nothing can be imported from the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import build_step_root, environ_without
from tests.fleet.fleetkit import REPO, build_once
from tests.test_readme import readme_block
from vmreconcile import __version__
from vmreconcile.cli.main import app

pytestmark = pytest.mark.slow

#: Every command README.md documents.
DOCUMENTED_COMMANDS = ("validate", "plan", "apply", "show", "export", "install-runtime", "demo")


def copy_worktree(target: Path) -> None:
    """The checkout's files as git sees them (tracked and new, not ignored), symlinks kept."""
    listing = (
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listing):
        source = REPO / rel
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), dest)
        elif source.is_file():
            shutil.copy2(source, dest)


def clean_env(**extra: str) -> dict[str, str]:
    env = environ_without("PYTHON", "VIRTUAL_ENV", "VMRECONCILE", "_VMRECONCILE")
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def run(*args: str | Path, cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=kw.pop("env", clean_env()),
        **kw,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


#: The first line of the README's install block (how the test finds it).
INSTALL_BLOCK = "python3 -m venv .venv-build"


def build_and_install(work: Path) -> dict:
    """The README's install block in a copy of the tree (wheel into ~/vmreconcile), then the
    sdist into that venv on its own, then the wheel over it again."""
    source = work / "source"
    copy_worktree(source)
    home = work / "home"
    home.mkdir()
    env = clean_env(HOME=str(home))
    pyenv = Path.home() / ".pyenv"
    if pyenv.is_dir():  # a pyenv shim as python3 finds its versions through HOME otherwise
        env.setdefault("PYENV_ROOT", str(pyenv))
    done = run("bash", "-euo", "pipefail", "-c", readme_block(INSTALL_BLOCK), cwd=source, env=env)
    dist = source / "dist"
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    venv = home / "vmreconcile"
    python = venv / "bin" / "python"
    assert done.stdout.splitlines()[-1] == f"vmreconcile {__version__}", done.stdout[-2000:]
    run(python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", sdist, cwd=work)
    from_sdist = run(venv / "bin" / "vmreconcile", "--version", cwd=work).stdout
    run(python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", wheel, cwd=work)
    return dict(
        work=str(work),
        wheel=str(wheel),
        sdist=str(sdist),
        venv=str(venv),
        python=str(python),
        vmreconcile=str(venv / "bin" / "vmreconcile"),
        from_sdist=from_sdist,
    )


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    data = build_once(tmp_path_factory, "release", build_and_install)
    paths = {key: Path(value) for key, value in data.items() if key != "from_sdist"}
    return dict(data, **paths)


@pytest.fixture
def outside(tmp_path):
    """A working directory outside the checkout."""
    return tmp_path


def packaged_data() -> set[str]:
    """What must ship as package data: every schema and every file under examples/."""
    names = {f"vmreconcile/schemas/{p.name}" for p in (REPO / "schemas").glob("*.json")}
    names |= {
        f"vmreconcile/examples/{p.relative_to(REPO / 'examples')}"
        for p in (REPO / "examples").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    return names


def test_wheel_and_sdist_carry_the_schemas_examples_and_one_version(release):
    with zipfile.ZipFile(release["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"vmreconcile-{__version__}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"vmreconcile-{__version__}.dist-info/entry_points.txt").decode()
        schema = wheel.read("vmreconcile/schemas/vmreconcile.schema.json")
    assert release["wheel"].name == f"vmreconcile-{__version__}-py3-none-any.whl"
    assert f"\nVersion: {__version__}\n" in metadata
    assert "vmreconcile = vmreconcile.cli.main:main" in entry_points
    missing = packaged_data() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "vmreconcile/examples/howto.yaml" in names and "vmreconcile/schemas/show.schema.json" in names
    assert schema == (REPO / "schemas" / "vmreconcile.schema.json").read_bytes()  # a file, not a link
    assert not [n for n in names if n.startswith(("tests/", "bench/")) or "__pycache__" in n]
    with tarfile.open(release["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    assert release["sdist"].name == f"vmreconcile-{__version__}.tar.gz"
    assert not (packaged_data() - set(members)), "package data missing from the sdist"
    assert all(members[n].isfile() for n in packaged_data())


def test_installed_cli_reports_its_version_and_completes(release, outside):
    vmr = release["vmreconcile"]
    assert release["from_sdist"] == f"vmreconcile {__version__}\n"
    assert run(vmr, "--version", cwd=outside).stdout == f"vmreconcile {__version__}\n"
    where = run(release["python"], "-c", "import vmreconcile; print(vmreconcile.__file__)", cwd=outside).stdout
    assert where.startswith(str(release["venv"])), where
    completion = run(vmr, "--show-completion", cwd=outside, env=clean_env(SHELL="/bin/bash")).stdout
    assert "_VMRECONCILE_COMPLETE=complete_bash" in completion
    words = run(
        vmr,
        cwd=outside,
        env=clean_env(_VMRECONCILE_COMPLETE="complete_bash", COMP_WORDS="vmreconcile pl", COMP_CWORD="1"),
    ).stdout
    assert words.split() == ["plan"]
    words = run(
        vmr,
        cwd=outside,
        env=clean_env(_VMRECONCILE_COMPLETE="complete_bash", COMP_WORDS="vmreconcile plan --for", COMP_CWORD="2"),
    ).stdout
    assert words.split() == ["--format"]


def test_installed_demo_runs_outside_the_checkout(release, outside):
    demo_root = outside / "demo-root"
    done = run(release["vmreconcile"], "demo", demo_root, cwd=outside)
    assert "Apply complete:" in done.stdout
    assert done.stdout.rstrip().count("No changes. The host matches the configuration.") >= 1
    assert (demo_root / "home" / "myuser" / "passwd.cdb").is_file()
    plan = run(
        release["vmreconcile"],
        "--root",
        demo_root,
        "plan",
        REPO / "examples" / "howto.yaml",
        "--detailed-exitcode",
        cwd=outside,
        check=False,
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # the packaged examples are the installed copies, and validate reads them from there
    packaged = run(
        release["python"], "-c", "from vmreconcile.resources import examples_dir; print(examples_dir())", cwd=outside
    ).stdout.strip()
    assert packaged.startswith(str(release["venv"]))
    run(release["vmreconcile"], "validate", Path(packaged) / "howto.yaml", cwd=outside)


def test_installed_runtime_launchers_log_in_and_deliver(release, make_system_user, public_tmp, outside):
    """install-runtime from the wheel; vauthenticate (as root) and vdeliver (as the base user) through them."""
    user = make_system_user(prefix="vmrw")
    root = public_tmp / "root"
    home = build_step_root("11-after-deliveries", root, base_user=user.name, uid=user.uid, gid=user.gid)
    for path in [home, *home.rglob("*")]:
        os.lchown(path, user.uid, user.gid)
    bindir = public_tmp / "bin"
    run(release["vmreconcile"], "--root", root, "install-runtime", "--bindir", bindir, cwd=outside)
    launcher = (bindir / "vauthenticate").read_text()
    assert f"sys.path.insert(0, {str(public_tmp / 'lib' / 'vmreconcile-runtime')!r})" in launcher
    assert f"root={str(root)!r}" in launcher

    good = subprocess.run(
        [bindir / "vauthenticate"],
        input=b"mydomain.org\0me\0secret",
        capture_output=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert (good.returncode, good.stderr) == (0, b""), good
    assert good.stdout.decode() == (
        f"UID={user.uid}\nGID={user.gid}\nUSER={user.name}\nHOME={home}\nMAILDIR=./users/me\nVUSER=me\n"
    )
    bad = subprocess.run(
        [bindir / "vauthenticate"],
        input=b"mydomain.org\0me\0wrong",
        capture_output=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert bad.returncode == 1 and bad.stdout == b""

    before = set((home / "users" / "alice" / "new").iterdir())
    sender = "sender@example.net"
    env = {
        "PATH": "/usr/bin:/bin",
        "USER": user.name,
        "HOME": str(home),
        "EXT": "alice",
        "HOST": "mydomain.org",
        "LOCAL": f"{user.name}-alice",
        "SENDER": sender,
        "UFLINE": f"From {sender} Tue Nov 24 18:54:20 2026\n",
        "RPLINE": f"Return-Path: <{sender}>\n",
        "DTLINE": f"Delivered-To: {user.name}-alice@mydomain.org\n",
    }
    delivered = subprocess.run(
        [bindir / "vdeliver"],
        input=b"Subject: wheel test\n\nhello\n",
        capture_output=True,
        cwd=home,
        env=env,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        timeout=60,
    )
    assert delivered.returncode == 0, delivered
    [new] = set((home / "users" / "alice" / "new").iterdir()) - before
    assert new.stat().st_uid == user.uid
    assert new.read_bytes().endswith(b"Subject: wheel test\n\nhello\n")


def test_every_command_help_shows_an_example():
    """In-process: each registered command's --help has an ``Example:`` line; README's commands all exist."""
    runner = cli_runner()
    names = sorted(c.name for c in app.registered_commands)
    missing_example = [n for n in names if "Example: vmreconcile" not in runner.invoke(app, [n, "--help"]).output]
    assert missing_example == [], f"--help without an example: {missing_example}"
    assert set(DOCUMENTED_COMMANDS) <= set(names), (
        f"documented but not registered: {set(DOCUMENTED_COMMANDS) - set(names)}"
    )


def test_the_ci_jobs_install_the_wheel_kept_in_the_config_repository(release, outside):
    """The GitHub and GitLab jobs' install commands, as written, in a config repository whose
    ci/ holds the wheel (with the release venv's python first on PATH, as setup-python's is)."""
    import yaml

    repo = outside / "config-repo"
    (repo / "ci").mkdir(parents=True)
    shutil.copy(release["wheel"], repo / "ci")
    github = yaml.safe_load((REPO / "examples" / "ci" / "github-actions.yml").read_text())
    [install] = [s["run"] for s in github["jobs"]["plan"]["steps"] if s.get("name") == "Install vmreconcile"]
    gitlab = yaml.safe_load((REPO / "examples" / "ci" / "gitlab-ci.yml").read_text())["vmreconcile-plan"]["script"]
    commands = [install, *(line for line in gitlab if "pip install" in line)]
    assert len(commands) == 2
    env = clean_env(PATH=f"{release['venv'] / 'bin'}{os.pathsep}{os.environ['PATH']}")
    for command in commands:
        done = run("bash", "-e", "-c", command, cwd=repo, env=env)
        assert f"ci/{release['wheel'].name}" in done.stdout, done.stdout
    assert run(release["vmreconcile"], "--version", cwd=outside).stdout == f"vmreconcile {__version__}\n"
