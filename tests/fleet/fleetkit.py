"""Helpers for the fleet tests: run real ansible-playbook locally, record results, digest trees.

Every playbook runs against ``localhost`` with the local connection and a throwaway
``--root``; the managed-host Python is Debian's ``/usr/bin/python3`` when present (which does
not have vmreconcile installed), so the tests also prove that the module only needs the
``vmreconcile`` executable, not an importable package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.checkout_cli import CLI
from tests.fleet.treedigest import tree_digest  # noqa: F401 - re-exported for the tests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VMRECONCILE = CLI
COLLECTIONS = REPO / "ansible"
COLLECTION_SOURCE = COLLECTIONS / "ansible_collections" / "vmreconcile" / "mail"
CALLBACKS = Path(__file__).resolve().parent / "callback"
TREEDIGEST = Path(__file__).resolve().parent / "treedigest.py"
MANAGED_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
#: Debian 12 ships ansible-core 2.14; the collection must work there as with current releases.
DEBIAN_12_ANSIBLE = "ansible-core>=2.14,<2.15"
#: Where the ansible-core 2.14 venv is kept between test runs (safe to delete).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmreconcile-tests"
#: What pip says when it cannot reach the package index (then the 2.14 tests are skipped).
_NO_INDEX = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found",
    "Could not fetch URL",
)
#: What an ansible-core older than the collection's requires_ansible warns.
UNSUPPORTED_WARNING = "does not support Ansible version"


@dataclass(frozen=True)
class Ansible:
    """One ansible-core installation the fleet tests run with: ``current`` (the test venv's,
    from pyproject's test extra) or ``2.14`` (Debian 12's series, in a venv of its own)."""

    label: str
    bindir: Path

    @property
    def playbook(self) -> Path:
        return self.bindir / "ansible-playbook"

    @property
    def galaxy(self) -> Path:
        return self.bindir / "ansible-galaxy"

    @property
    def doc(self) -> Path:
        return self.bindir / "ansible-doc"

    def version(self) -> str:
        done = subprocess.run([str(self.playbook), "--version"], capture_output=True, text=True, check=True)
        return done.stdout.split("core ", 1)[1].split("]", 1)[0]


CURRENT_ANSIBLE = Ansible("current", BIN)
ANSIBLE_LABELS = ("current", "2.14")


def ansible_installation(label: str) -> Ansible:
    """The installation for ``label``; skips (with the reason) when it cannot be had."""
    if label == "current":
        if not CURRENT_ANSIBLE.playbook.exists():
            pytest.skip(f"ansible-core is not installed in this venv ({CURRENT_ANSIBLE.playbook} missing)")
        return CURRENT_ANSIBLE
    return debian12_ansible()


def debian12_ansible() -> Ansible:
    """ansible-core 2.14 from PyPI in a venv of Debian's /usr/bin/python3, made once and cached
    under `CACHE` (a lock keeps parallel test workers from making it twice)."""
    import fcntl
    import shutil

    venv = CACHE / "ansible-core-2.14"
    complete = venv / "vmreconcile-tests-complete"  # written last: a venv cannot be moved into place
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "ansible-core-2.14.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not complete.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([MANAGED_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
            done = subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", DEBIAN_12_ANSIBLE],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                output = done.stdout + done.stderr
                if any(sign in output for sign in _NO_INDEX):
                    pytest.skip(f"cannot install {DEBIAN_12_ANSIBLE} from the package index: {output[-300:]}")
                raise AssertionError(f"pip install {DEBIAN_12_ANSIBLE} failed:\n{output[-3000:]}")
            complete.write_text(DEBIAN_12_ANSIBLE + "\n")
    return Ansible("2.14", venv / "bin")


@dataclass
class Record:
    """One task result as the test callback saw it."""

    task: str
    handler: bool
    status: str
    changed: bool
    result: dict


@dataclass
class PlaybookRun:
    returncode: int
    stdout: str
    stderr: str
    records: list[Record]

    def named(self, name: str) -> Record:
        found = [r for r in self.records if r.task == name]
        assert len(found) == 1, (name, [r.task for r in self.records], self.stdout[-3000:])
        return found[0]

    def handlers_run(self) -> list[str]:
        return [r.task for r in self.records if r.handler and r.status == "ok"]

    def to_json(self) -> dict:
        return dict(
            returncode=self.returncode, stdout=self.stdout, stderr=self.stderr, records=[vars(r) for r in self.records]
        )

    @classmethod
    def from_json(cls, data: dict) -> PlaybookRun:
        return cls(data["returncode"], data["stdout"], data["stderr"], [Record(**r) for r in data["records"]])


def run_playbook(
    playbook: Path,
    workdir: Path,
    *args: str,
    extra_vars: dict | None = None,
    inventory: str = "localhost,",
    collections: Path = COLLECTIONS,
    timeout: int = 180,
    ansible: Ansible = CURRENT_ANSIBLE,
) -> PlaybookRun:
    """``ansible-playbook -i INVENTORY -c local`` with the repository's collection and the recorder."""
    record = workdir / f"record-{os.getpid()}-{len(list(workdir.glob('record-*')))}.jsonl"
    home = workdir / "ansible-home"
    home.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
        ANSIBLE_CALLBACKS_ENABLED="vmr_record",
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_PIPELINING="1",  # one process per task instead of copy + chmod + run + rm
        ANSIBLE_CONFIG=str(workdir / "no-ansible.cfg"),
        VMR_RECORD_FILE=str(record),
    )
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    command = [
        str(ansible.playbook),
        "-i",
        inventory,
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={MANAGED_PYTHON}",
        *args,
    ]
    if extra_vars:
        vars_file = workdir / f"vars-{len(list(workdir.glob('vars-*')))}.json"
        vars_file.write_text(json.dumps(extra_vars))
        command += ["-e", f"@{vars_file}"]
    command.append(str(playbook))
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    records = []
    if record.exists():
        records = [Record(**json.loads(line)) for line in record.read_text().splitlines() if line]
    return PlaybookRun(done.returncode, done.stdout, done.stderr, records)


def vmreconcile(*args: str, root: Path | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """The venv's ``vmreconcile`` command (the same one the playbooks drive)."""
    command = [str(VMRECONCILE)] + (["--root", str(root)] if root else []) + list(args)
    return subprocess.run(command, capture_output=True, text=True, check=check, **kw)


class _KeepDates(yaml.SafeLoader):
    """A SafeLoader that keeps ISO dates as the strings export wrote (vmreconcile reads them)."""


_KeepDates.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_export(text: str) -> dict:
    """An exported configuration as plain data, to edit and dump again with ``yaml.safe_dump``."""
    return yaml.load(text, Loader=_KeepDates)


def install_collection(work: Path, ansible: Ansible = CURRENT_ANSIBLE) -> Path:
    """Build the collection tarball and install it (offline, from the file) under ``work``.

    Returns the collections path to give Ansible, so a test exercises the built artifact.
    """
    ansible_env = dict(os.environ, ANSIBLE_HOME=str(work / "ansible-home"), ANSIBLE_NOCOLOR="1")
    subprocess.run(
        [str(ansible.galaxy), "collection", "build", str(COLLECTION_SOURCE), "--output-path", str(work)],
        check=True,
        capture_output=True,
        env=ansible_env,
    )
    [tarball] = work.glob("vmreconcile-mail-*.tar.gz")
    target = work / "collections"
    subprocess.run(
        [str(ansible.galaxy), "collection", "install", "--offline", str(tarball), "-p", str(target)],
        check=True,
        capture_output=True,
        env=ansible_env,
    )
    return target


def build_once(tmp_path_factory, name: str, build) -> dict:
    """``build(directory) -> dict`` once per test session, even under pytest-xdist.

    xdist gives every worker its own module-scoped fixtures, which would build the wheel and run
    the module playbook once per worker. Instead the first worker builds into a directory of
    the session's shared temp root under an exclusive lock and saves the (JSON) result; the
    others wait for the lock and load it. Without xdist it is the session's own temp root.
    """
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = shared / f"fleet-{name}-{os.getpid()}"  # a fresh one if an earlier build failed
    result = shared / f"fleet-{name}.json"
    with open(shared / f"fleet-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            directory.mkdir()
            result.write_text(json.dumps(build(directory)))
    return json.loads(result.read_text())
