"""A corpus of planted live states (issue 11): each one stops at ``plan`` with the exact error,
naming the domain and the path, and nothing is written; one tenant never blocks the others.

Every case starts from the same throwaway ``--root`` host, where two domains were applied:
``victim.example`` (base user ``tenant``) and ``good.example`` (base user ``good``). The case
plants something in the tenant's home, its account or the host, and the configuration then
asks for one more user in each domain. For a domain-level case:

* ``plan`` exits 1, prints the exact error line (``file:line:col: domain victim.example:
  <path>: <why>``) and still shows ``good.example``'s change;
* ``apply`` without ``--domain`` refuses and writes nothing;
* ``apply --domain good.example`` applies the healthy domain and touches nothing of the tenant.

A host-level case (the qmail tree, a global option, a control file) stops the whole plan with
its one error, and nothing is written. As root, homes belong to their base users (real
ownership), and the ownership cases run too.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clirunner import cli_runner
from tests.conftest import IS_ROOT, TREE_GID, TREE_UID, own_home
from vmreconcile.cli.main import app

TENANT_UID = TREE_UID if not IS_ROOT else 5001
GOOD_UID = TREE_UID if not IS_ROOT else 5002
GID = TREE_GID

BASE = """\
domains:
  victim.example:
    base_user: tenant
    users:
      alice: {password: null}
  good.example:
    base_user: good
    users:
      bob: {password: null}
"""
#: The configuration each case plans: one new user per domain.
CONFIG = BASE.replace(
    "      alice: {password: null}\n", "      alice: {password: null}\n      carol: {password: null}\n"
).replace("      bob: {password: null}\n", "      bob: {password: null}\n      dave: {password: null}\n")
VICTIM_AT = "2:3"  # where `victim.example:` is written in CONFIG


def passwd_line(name: str, uid: int, home: str) -> str:
    return f"{name}:x:{uid}:{GID}::{home}:/bin/sh\n"


def write_passwd(root: Path, tenant_uid: int = TENANT_UID, tenant_home: str = "/home/tenant") -> None:
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        + passwd_line("tenant", tenant_uid, tenant_home)
        + passwd_line("good", GOOD_UID, "/home/good")
    )


def run(root: Path, *args: str):
    """The CLI in-process; a hang (a FIFO read, a huge file) fails the test instead of blocking."""

    def hung(signum, frame):
        raise AssertionError("vmreconcile hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        return cli_runner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The host both cases start from: two domains applied, each with a table and a maildir."""
    root = tmp_path_factory.mktemp("hostile-template") / "root"
    (root / "etc/vmailmgr").mkdir(parents=True)
    (root / "etc/vmailmgr/qmail-root").write_text("/var/qmail\n")
    (root / "var/qmail/control").mkdir(parents=True)
    (root / "var/qmail/control/rcpthosts").write_text("localhost\n")
    write_passwd(root)
    for name in ("tenant", "good"):
        (root / "home" / name).mkdir(parents=True)
    own_homes(root)
    config = root.parent / "base.yaml"
    config.write_text(BASE)
    applied = run(root, "apply", str(config), "--yes")
    assert applied.exit_code == 0, applied.output
    return root


def own_homes(root: Path) -> None:
    own_home(root / "home/tenant", TENANT_UID, GID)
    own_home(root / "home/good", GOOD_UID, GID)


@dataclass
class Site:
    root: Path
    config: Path

    @property
    def tenant(self) -> Path:
        return self.root / "home/tenant"

    @property
    def good(self) -> Path:
        return self.root / "home/good"

    def option(self, name: str, content: bytes | str) -> Path:
        (self.tenant / ".vmailmgr").mkdir(exist_ok=True)
        path = self.tenant / ".vmailmgr" / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path


@pytest.fixture
def site(template, tmp_path) -> Site:
    root = tmp_path / "root"
    shutil.copytree(template, root, symlinks=True)
    own_homes(root)  # copytree does not copy owners
    config = tmp_path / "mail.yaml"
    config.write_text(CONFIG)
    return Site(root, config)


def sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fp:
        fp.truncate(size)


def replace_with(path: Path, make: Callable[[Path], None]) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    make(path)


# -- the corpus: name -> plant(site) returning the error after "domain victim.example: " -------


def _missing_user(s: Site) -> str:
    (s.root / "etc/passwd").write_text(passwd_line("good", GOOD_UID, "/home/good"))
    return f"base user 'tenant' does not exist in {s.root}/etc/passwd; create the system account first"


def _uid_zero(s: Site) -> str:
    write_passwd(s.root, tenant_uid=0)
    return "base user 'tenant' has uid 0: a domain never belongs to root (its table and mailboxes would be root's)"


def _system_account(s: Site) -> str:
    write_passwd(s.root, tenant_uid=999)
    own_home(s.tenant, 999, GID)
    return (
        "base user 'tenant' is a system account (uid 999 < UID_MIN 1000 of /etc/login.defs); give the domain "
        "its own account, or write system_account: true for the domain if this one is meant"
    )


def _uid_min_of_the_tree(s: Site) -> str:
    (s.root / "etc/login.defs").write_text(f"# shadow\nUID_MIN\t\t\t {GOOD_UID}\nUID_MAX 60000\n")
    return (
        f"base user 'tenant' is a system account (uid {TENANT_UID} < UID_MIN {GOOD_UID} of /etc/login.defs); give "
        "the domain its own account, or write system_account: true for the domain if this one is meant"
    )


def _relative_home(s: Site) -> str:
    write_passwd(s.root, tenant_home="home/tenant")
    return "base user 'tenant': home 'home/tenant' is not an absolute path"


def _missing_home(s: Site) -> str:
    shutil.rmtree(s.tenant)
    return f"{s.tenant}: the home of base user 'tenant' does not exist; create it (owned by tenant) first"


def _home_is_a_file(s: Site) -> str:
    replace_with(s.tenant, lambda p: p.write_text("not a home\n"))
    return f"{s.tenant}: the home of base user 'tenant' is not a directory"


def _home_is_root(s: Site) -> str:
    write_passwd(s.root, tenant_home="/")
    return f"{s.root}: the home of base user 'tenant' is the root directory '/'; give it a home of its own"


def _shared_home(s: Site) -> str:
    write_passwd(s.root, tenant_home="/home/good")
    return (
        f"{s.good}: the home of base user 'tenant' is also the home of base user 'good' ({s.good}): "
        "each base user needs a home of its own"
    )


def _home_inside_another(s: Site) -> str:
    (s.good / "nested").mkdir()
    own_home(s.good / "nested", TENANT_UID, GID)
    write_passwd(s.root, tenant_home="/home/good/nested")
    return (
        f"{s.good}/nested: the home of base user 'tenant' lies inside the home of base user 'good' ({s.good}): "
        "each base user needs a home of its own"
    )


def _home_containing_another(s: Site) -> str:
    write_passwd(s.root, tenant_home="/home")
    own_home(s.root / "home", TENANT_UID, GID)
    return (
        f"{s.root}/home: the home of base user 'tenant' contains the home of base user 'good' ({s.good}): "
        "each base user needs a home of its own"
    )


def _home_symlinked_to_another(s: Site) -> str:
    (s.root / "home/alias").symlink_to(s.good)
    write_passwd(s.root, tenant_home="/home/alias")
    return (
        f"{s.root}/home/alias: the home of base user 'tenant' is also the home of base user 'good' ({s.good}): "
        "each base user needs a home of its own"
    )


def _home_owned_by_someone_else(s: Site) -> str:
    os.chown(s.tenant, GOOD_UID, GID)
    return (
        f"{s.tenant}: the home of base user 'tenant' (uid {TENANT_UID}) is owned by uid {GOOD_UID}; "
        "vmreconcile writes tables and mailboxes only into a home its base user owns"
    )


def _home_is_etc(s: Site) -> str:
    write_passwd(s.root, tenant_home="/etc")
    return (
        f"{s.root}/etc: the home of base user 'tenant' (uid {TENANT_UID}) is owned by uid 0; "
        "vmreconcile writes tables and mailboxes only into a home its base user owns"
    )


def _symlink_at(name: str, is_dir: bool) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        outside = s.root / "outside"
        outside.mkdir(exist_ok=True)
        target = outside if is_dir else outside / "file"
        if not is_dir:
            target.write_text("x\n")
        replace_with(s.tenant / name, lambda p: p.symlink_to(target))
        return f"{s.tenant}/{name}: is a symbolic link; refusing to follow it"

    return plant


def _fifo_at(name: str, message: str) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        replace_with(s.tenant / name, lambda p: os.mkfifo(p))
        return f"{s.tenant}/{name}: {message}"

    return plant


def _wrong_kind(name: str, make_dir: bool, message: str) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        replace_with(s.tenant / name, (lambda p: p.mkdir()) if make_dir else (lambda p: p.write_text("x\n")))
        return f"{s.tenant}/{name}: {message}"

    return plant


def _hard_linked_table(s: Site) -> str:
    """A hard link to a table outside every managed home (a backup of another tenant's, say)."""
    backup = s.root / "backup.cdb"
    shutil.copyfile(s.good / "passwd.cdb", backup)
    replace_with(s.tenant / "passwd.cdb", lambda p: os.link(backup, p))
    return f"{s.tenant}/passwd.cdb: has 2 hard links; refusing to read it (it may be another table)"


def _table_bytes(transform: Callable[[bytes], bytes], message: str) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        table = s.tenant / "passwd.cdb"
        data = transform(table.read_bytes())
        replace_with(table, lambda p: p.write_bytes(data))
        return f"{s.tenant}/passwd.cdb: {message}"

    return plant


def _sparse_table(size: int, message: str) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        replace_with(s.tenant / "passwd.cdb", lambda p: sparse(p, size))
        return f"{s.tenant}/passwd.cdb: {message}"

    return plant


def _cut_short(s: Site) -> str:
    import struct

    table = s.tenant / "passwd.cdb"
    data = table.read_bytes()[:-5]
    header = struct.unpack_from("<512I", data)
    outside = next(b for b in range(256) if header[2 * b] + 8 * header[2 * b + 1] > len(data))
    replace_with(table, lambda p: p.write_bytes(data))
    return f"{table}: corrupt cdb: hash table {outside} lies outside the file"


def _pointer_past_the_end(data: bytes) -> bytes:
    return (len(data) + 4096).to_bytes(4, "little") + data[4:]


def _bad_record_version(data: bytes) -> bytes:
    return data.replace(b"\x02\x0a\x01\x08\x01\x00", b"\x07\x0a\x01\x08\x01\x00", 1)


def _extra_slots(data: bytes) -> bytes:
    """A hash table that claims two more slots (its file grows by them): one record fewer than indexed."""
    import struct

    header = list(struct.unpack_from("<512I", data))
    header[2 * 255 + 1] += 2  # the last table is last in the file: it grows at the end
    return struct.pack("<512I", *header) + data[2048:] + b"\0" * 16


def _sparse_qmail_default(s: Site) -> str:
    replace_with(s.tenant / ".qmail-default", lambda p: sparse(p, 1 << 30))
    return f"{s.tenant}/.qmail-default: larger than 65,536 bytes"


def _big_qmail_default(s: Site) -> str:
    replace_with(s.tenant / ".qmail-default", lambda p: p.write_bytes(b"|/usr/local/bin/vdeliver\n" * 3000))
    return f"{s.tenant}/.qmail-default: larger than 65,536 bytes"


def _option(name: str, content: str | bytes, message: str) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        path = s.option(name, content)
        return f"{path}: {message}"

    return plant


def _option_fifo(name: str) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        (s.tenant / ".vmailmgr").mkdir(exist_ok=True)
        os.mkfifo(s.tenant / ".vmailmgr" / name)
        return f"{s.tenant}/.vmailmgr/{name}: not a regular file (a FIFO)"

    return plant


def _option_symlink(s: Site) -> str:
    (s.tenant / ".vmailmgr").mkdir(exist_ok=True)
    (s.tenant / ".vmailmgr/user-dir").symlink_to(s.root / "etc/vmailmgr/qmail-root")
    return f"{s.tenant}/.vmailmgr/user-dir: is a symbolic link; refusing to follow it"


def _option_hard_link(s: Site) -> str:
    outside = s.root / "shared-option"
    outside.write_text("users/\n")
    (s.tenant / ".vmailmgr").mkdir(exist_ok=True)
    os.link(outside, s.tenant / ".vmailmgr/user-dir")
    return f"{s.tenant}/.vmailmgr/user-dir: has 2 hard links; refusing to read it (it may be another file's content)"


def _option_sparse(s: Site) -> str:
    (s.tenant / ".vmailmgr").mkdir(exist_ok=True)
    sparse(s.tenant / ".vmailmgr/default-expiry", 1 << 30)
    return f"{s.tenant}/.vmailmgr/default-expiry: larger than 4,096 bytes"


def _option_directory(s: Site) -> str:
    (s.tenant / ".vmailmgr/default-msgsize").mkdir(parents=True)
    return f"{s.tenant}/.vmailmgr/default-msgsize: not a regular file (a directory)"


def _renamed_table_symlink(s: Site) -> str:
    s.option("password-file", "other\n")
    (s.tenant / "other.cdb").symlink_to(s.good / "passwd.cdb")
    return f"{s.tenant}/other.cdb: is a symbolic link; refusing to follow it"


def _yaml_edit(old: str, new: str, message: Callable[[Site], str], at: str = VICTIM_AT) -> Callable[[Site], str]:
    def plant(s: Site) -> str:
        s.config.write_text(s.config.read_text().replace(old, new, 1))
        return message(s)

    plant.at = at  # type: ignore[attr-defined]
    return plant


def _deep_home(s: Site) -> str:
    """A home whose path leaves too little room under PATH_MAX for a sliced mailbox path."""
    from vmreconcile.formats.userdir import userdir

    deep = "/deep/" + "/".join(["d" * 250] * 15)  # room for the postmaster aliases, not for a 64-byte name
    (s.root / deep.lstrip("/")).mkdir(parents=True)
    own_home(s.root / deep.lstrip("/"), TENANT_UID, GID)
    write_passwd(s.root, tenant_home=deep)
    (s.root / "var/qmail/control/virtualdomains").write_text("good.example:good\n")
    name = "c" * 64  # the longest name validate lets through (SMTP's local-part limit)
    s.config.write_text(
        s.config.read_text()
        .replace("carol", name)
        .replace(
            "    base_user: tenant\n", "    base_user: tenant\n    options: {user-dir-bits: 32, user-dir-slices: 32}\n"
        )
    )
    directory = "./" + userdir(name, "users/", 32, 32)
    length = len(deep) + 1 + len(directory) + len("/cur")
    assert length >= 4096
    return f"victim.example/{name}/maildir: directory '{directory}' would be a path of {length} bytes in the home (at most 4095)"


_deep_home.at = "7:7"  # type: ignore[attr-defined]


CORPUS: dict[str, Callable[[Site], str]] = {
    # the account
    "base user missing": _missing_user,
    "base user is uid 0": _uid_zero,
    "base user is a system account": _system_account,
    "UID_MIN of the tree's login.defs": _uid_min_of_the_tree,
    "home not absolute": _relative_home,
    "home missing": _missing_home,
    "home is a file": _home_is_a_file,
    "home is /": _home_is_root,
    # what apply makes at the top of the home
    "~/.vmailmgr is a symlink": _symlink_at(".vmailmgr", is_dir=True),
    "~/.vmailmgr is a file": _wrong_kind(".vmailmgr", False, "is not a directory; refusing to use it"),
    "~/users is a symlink": _symlink_at("users", is_dir=True),
    "~/users is a file": _wrong_kind("users", False, "is not a directory; refusing to use it"),
    "passwd.cdb is a symlink": _symlink_at("passwd.cdb", is_dir=False),
    "passwd.cdb is a directory": _wrong_kind("passwd.cdb", True, "is not a regular file; refusing to use it"),
    "passwd.cdb is a FIFO": _fifo_at("passwd.cdb", "is not a regular file; refusing to use it"),
    ".qmail-default is a symlink": _symlink_at(".qmail-default", is_dir=False),
    ".qmail-default is a FIFO": _fifo_at(".qmail-default", "is not a regular file; refusing to use it"),
    ".qmail-default is a directory": _wrong_kind(".qmail-default", True, "is not a regular file; refusing to use it"),
    # the table
    "passwd.cdb hard-linked to another tenant's": _hard_linked_table,
    "passwd.cdb truncated to 1000 bytes": _table_bytes(
        lambda d: d[:1000], "truncated cdb: 1000 bytes, the header alone is 2048"
    ),
    "passwd.cdb empty": _table_bytes(lambda d: b"", "empty file (0 bytes) is not a cdb"),
    "passwd.cdb cut short": _cut_short,
    "passwd.cdb with garbage appended": _table_bytes(
        lambda d: d + b"garbage!", "corrupt cdb: the hash tables end at {end}, the file at {size}"
    ),
    "passwd.cdb record area past the end": _table_bytes(
        _pointer_past_the_end, "corrupt cdb: record area ends outside the file"
    ),
    "passwd.cdb with a bad record version": _table_bytes(
        _bad_record_version,
        "virtual user 'mailer-daemon': unknown record format version 0x07 (VMailMgr reads 1, 2 and ':')",
    ),
    "passwd.cdb indexing more records than it holds": _table_bytes(
        _extra_slots, "corrupt cdb: 4 records, the hash tables index 5"
    ),
    "passwd.cdb sparse 1 GiB": _sparse_table(1 << 30, "1073741824 bytes, more than the 67108864 a table may have"),
    "passwd.cdb sparse 32 MiB of zeros": _sparse_table(32 << 20, "corrupt cdb: record area ends outside the file"),
    # .qmail-default
    ".qmail-default sparse 1 GiB": _sparse_qmail_default,
    ".qmail-default larger than 64 KiB": _big_qmail_default,
    # ~/.vmailmgr
    "option file is a FIFO": _option_fifo("password-file"),
    "option file is a symlink": _option_symlink,
    "option file is hard-linked": _option_hard_link,
    "option file is sparse 1 GiB": _option_sparse,
    "option file is a directory": _option_directory,
    "user-dir-bits huge": _option("user-dir-bits", "1000000\n", "1000000 is out of range (0 to 32)"),
    "user-dir-slices beyond 32 bits": _option(
        "user-dir-slices",
        "99999999999\n",
        "99999999999 does not fit 32 bits (at most 4294967295, or '-' for unlimited)",
    ),
    "user-dir-slices unlimited": _option("user-dir-slices", "-\n", "'-' (unlimited) is out of range (0 to 32)"),
    "user-dir climbing out": _option(
        "user-dir", "../good/users\n", "'../good/users' has a '..' component: it would leave the base user's home"
    ),
    "user-dir absolute": _option(
        "user-dir", "/etc\n", "'/etc' is absolute: vmreconcile makes mailboxes only inside the base user's home"
    ),
    "password-file into another home": _option(
        "password-file",
        "../good/passwd\n",
        "password-file '../good/passwd' must be a plain file name in the base user's home",
    ),
    "default-hardquota with a unit": _option(
        "default-hardquota", "100 MiB\n", "'100 MiB' is not a whole number (digits only, or '-' for unlimited)"
    ),
    "default-username with a space": _option(
        "default-username",
        "a b\n",
        "'a b' is not a valid entry name: the name contains ' ' (not allowed: '/', ':', space, tab, CR, LF)",
    ),
    "postmaster-aliases with a colon": _option(
        "postmaster-aliases",
        "postmaster\nx:y\n",
        "'x:y' is not a valid entry name: the name contains ':' (not allowed: '/', ':', space, tab, CR, LF)",
    ),
    "separators with an escape character": _option(
        "separators", b"@\x1b[31m\n", "'@\\x1b[31m' contains a control character"
    ),
    "qmail-root relative in the home": _option("qmail-root", "var/qmail\n", "'var/qmail' is not an absolute path"),
    "renamed table is a symlink": _renamed_table_symlink,
    # paths the plan would need
    "a mailbox path longer than PATH_MAX": _deep_home,
    "a 300-character directory component": _yaml_edit(
        "      carol: {password: null}\n",
        f"      carol: {{password: null, directory: ./users/{'x' * 300}}}\n",
        lambda s: (
            f"victim.example/carol/maildir: directory './users/{'x' * 300}' has a component of 300 bytes (at most 255)"
        ),
        at="6:7",
    ),
    "a directory climbing out of the home": _yaml_edit(
        "      carol: {password: null}\n",
        "      carol: {password: null, directory: ../good/users/bob, has_mailbox: true}\n",
        lambda s: (
            "victim.example/carol/maildir: directory '../good/users/bob' has a '..' component: it would leave the base user's home"
        ),
        at="6:7",
    ),
}

ROOT_ONLY = {"UID_MIN of the tree's login.defs"}
ROOT_ONLY_EXTRA: dict[str, Callable[[Site], str]] = {
    "home owned by another user": _home_owned_by_someone_else,
    "home is /etc (owned by root)": _home_is_etc,
}


def written(root: Path) -> dict[str, tuple[int, int]]:
    """Every path with its mtime and size (the lock file aside: it is apply's, not the host's)."""
    out = {}
    for path in root.rglob("*"):
        if str(path).startswith(str(root / "run")):
            continue
        info = path.lstat()
        out[str(path)] = (info.st_mtime_ns, info.st_size)
    return out


def check_case(site: Site, plant: Callable[[Site], str]) -> None:
    message = plant(site)
    if "{end}" in message:
        size = (site.tenant / "passwd.cdb").stat().st_size
        message = message.format(end=size - 8, size=size)
    at = getattr(plant, "at", VICTIM_AT)
    expected = f"{site.config}:{at}: domain victim.example: {message}"
    before = written(site.root)

    plan = run(site.root, "plan", str(site.config))
    assert plan.exit_code == 1, plan.output
    assert expected in plan.stderr.splitlines(), plan.stderr
    assert "+ user good.example/dave" in plan.stdout  # the other domain is still planned
    assert "victim.example/" not in plan.stdout.split("Not planned")[0]
    assert "vmreconcile: 1 problem(s): those domains were not planned" in plan.stderr

    refused = run(site.root, "apply", str(site.config), "--yes")
    assert refused.exit_code == 1
    assert "refusing to apply while a domain has errors; nothing was written" in refused.stderr
    assert written(site.root) == before

    tenant_before = {p: v for p, v in before.items() if p.startswith(str(site.tenant))}
    healthy = run(site.root, "apply", str(site.config), "--yes", "--domain", "good.example")
    assert healthy.exit_code == 0, healthy.output
    assert (site.good / "users/dave/new").is_dir()
    after = written(site.root)
    assert {p: v for p, v in after.items() if p.startswith(str(site.tenant))} == tenant_before


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_a_planted_live_state_stops_at_plan_for_its_domain_only(site, case):
    if case in ROOT_ONLY and not IS_ROOT:
        pytest.skip("the tree's homes belong to the caller unless root: this case needs real ownership")
    check_case(site, CORPUS[case])


@pytest.mark.skipif(not IS_ROOT, reason="needs real ownership (root) to give a home to another uid")
@pytest.mark.parametrize("case", sorted(ROOT_ONLY_EXTRA))
def test_with_real_ownership_a_home_its_base_user_does_not_own_is_refused(site, case):
    check_case(site, ROOT_ONLY_EXTRA[case])


def test_the_corpus_is_large_enough():
    assert len(CORPUS) + len(ROOT_ONLY_EXTRA) + len(CROSS) + len(HOST_CASES) >= 50


# -- cases that involve both domains: each is refused, with its own line ------------------------


def _good_line(s: Site, message: str) -> str:
    return f"{s.config}:7:3: domain good.example: {message}"


def _overlap(s: Site, tenant_home: Path, tenant_says: str, good_says: str) -> tuple[str, str]:
    return (
        f"{tenant_home}: the home of base user 'tenant' {tenant_says} base user 'good' ({s.good}): "
        "each base user needs a home of its own",
        f"{s.good}: the home of base user 'good' {good_says} base user 'tenant' ({tenant_home}): "
        "each base user needs a home of its own",
    )


def _both_shared(s: Site) -> tuple[str, str]:
    write_passwd(s.root, tenant_home="/home/good")
    return _overlap(s, s.good, "is also the home of", "is also the home of")


def _both_nested(s: Site) -> tuple[str, str]:
    (s.good / "nested").mkdir()
    own_home(s.good / "nested", TENANT_UID, GID)
    write_passwd(s.root, tenant_home="/home/good/nested")
    return _overlap(s, s.good / "nested", "lies inside the home of", "contains the home of")


def _both_containing(s: Site) -> tuple[str, str]:
    write_passwd(s.root, tenant_home="/home")
    own_home(s.root / "home", TENANT_UID, GID)
    return _overlap(s, s.root / "home", "contains the home of", "lies inside the home of")


def _both_symlinked(s: Site) -> tuple[str, str]:
    (s.root / "home/alias").symlink_to(s.good)
    write_passwd(s.root, tenant_home="/home/alias")
    return _overlap(s, s.root / "home/alias", "is also the home of", "is also the home of")


def _both_hard_linked_table(s: Site) -> tuple[str, str]:
    """The tenant links the other domain's table into its home: neither table is read (a hard
    link may be another table), so both domains stop, each naming its file."""
    replace_with(s.tenant / "passwd.cdb", lambda p: os.link(s.good / "passwd.cdb", p))
    message = "has 2 hard links; refusing to read it (it may be another table)"
    return f"{s.tenant}/passwd.cdb: {message}", f"{s.good}/passwd.cdb: {message}"


CROSS: dict[str, Callable[[Site], tuple[str, str]]] = {
    "home shared with another base user": _both_shared,
    "home inside another home": _both_nested,
    "home contains another home": _both_containing,
    "home is a symlink to another home": _both_symlinked,
    "table hard-linked to the other domain's": _both_hard_linked_table,
}


@pytest.mark.parametrize("case", sorted(CROSS))
def test_a_planted_state_that_involves_both_domains_stops_both(site, case):
    tenant_says, good_says = CROSS[case](site)
    before = written(site.root)
    plan = run(site.root, "plan", str(site.config))
    assert plan.exit_code == 1
    lines = plan.stderr.splitlines()
    assert f"{site.config}:{VICTIM_AT}: domain victim.example: {tenant_says}" in lines, plan.stderr
    assert _good_line(site, good_says) in lines, plan.stderr
    assert lines[-1].endswith("problem(s): those domains were not planned")
    refused = run(site.root, "apply", str(site.config), "--yes")
    assert refused.exit_code == 1 and written(site.root) == before


def test_a_system_account_is_accepted_when_the_domain_says_so(site):
    _system_account(site)
    site.config.write_text(
        CONFIG.replace("    base_user: tenant\n", "    base_user: tenant\n    system_account: true\n")
    )
    plan = run(site.root, "plan", str(site.config), "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert "+ user victim.example/carol" in plan.stdout


def test_an_unmanaged_broken_domain_is_a_note_and_blocks_nothing(site):
    control = site.root / "var/qmail/control/virtualdomains"
    control.write_text(control.read_text() + "stray.example:ghost\n")
    plan = run(site.root, "plan", str(site.config))
    assert plan.exit_code == 0, plan.output
    assert (
        f"domain stray.example is not in the configuration and could not be read: base user 'ghost' does not "
        f"exist in {site.root}/etc/passwd; create the system account first"
    ) in plan.stdout
    assert run(site.root, "apply", str(site.config), "--yes").exit_code == 0
    assert "stray.example:ghost" in control.read_text()


def test_a_hard_linked_qmail_default_is_not_read_and_is_replaced(site):
    outside = site.root / "secret"
    outside.write_text("root-only content\n")
    replace_with(site.tenant / ".qmail-default", lambda p: os.link(outside, p))
    plan = run(site.root, "plan", str(site.config))
    assert plan.exit_code == 0, plan.output
    assert "root-only content" not in plan.stdout
    assert "(not read: the file has more than one hard link)" in plan.stdout
    assert run(site.root, "apply", str(site.config), "--yes").exit_code == 0
    assert outside.read_text() == "root-only content\n"
    assert (site.tenant / ".qmail-default").read_text() == "|/usr/local/bin/vdeliver\n"
    assert run(site.root, "plan", str(site.config), "--detailed-exitcode").exit_code == 0


# -- host-level problems: nothing can be planned ---------------------------------------------

HOST_CASES: dict[str, Callable[[Path], str]] = {
    "missing qmail control directory": lambda root: (
        shutil.rmtree(root / "var/qmail/control"),
        f"{root}/var/qmail/control: qmail's control directory does not exist or is not a directory: is qmail "
        "installed there (qmail.root, /etc/vmailmgr/qmail-root)? vmreconcile does not create qmail's directories",
    )[1],
    "missing qmail root": lambda root: (
        shutil.rmtree(root / "var/qmail"),
        f"{root}/var/qmail: the qmail root does not exist or is not a directory: is qmail installed there "
        "(qmail.root, /etc/vmailmgr/qmail-root)? vmreconcile does not create qmail's directories",
    )[1],
    "relative /etc/vmailmgr/qmail-root": lambda root: (
        (root / "etc/vmailmgr/qmail-root").write_text("var/qmail\n"),
        "/etc/vmailmgr/qmail-root: 'var/qmail/' is not an absolute path; write e.g. /var/qmail/",
    )[1],
    "global user-dir-bits out of range": lambda root: (
        (root / "etc/vmailmgr/user-dir-bits").write_text("4096\n"),
        "/etc/vmailmgr/user-dir-bits: 4096 is out of range (0 to 32)",
    )[1],
    "control/virtualdomains is a FIFO": lambda root: (
        (root / "var/qmail/control/virtualdomains").unlink(),
        os.mkfifo(root / "var/qmail/control/virtualdomains"),
        f"{root}/var/qmail/control/virtualdomains: not a regular file (a FIFO)",
    )[2],
    "control/rcpthosts sparse 1 GiB": lambda root: (
        sparse(root / "var/qmail/control/rcpthosts", 1 << 30),
        f"{root}/var/qmail/control/rcpthosts: larger than 67,108,864 bytes",
    )[1],
}


@pytest.mark.parametrize("case", sorted(HOST_CASES))
def test_a_broken_host_stops_the_whole_plan_with_one_error(site, case):
    message = HOST_CASES[case](site.root)
    before = written(site.root)
    plan = run(site.root, "plan", str(site.config))
    assert plan.exit_code == 1
    assert plan.stderr.splitlines() == [f"vmreconcile: {message}"]
    assert plan.stdout == ""
    applied = run(site.root, "apply", str(site.config), "--yes")
    assert applied.exit_code == 1 and applied.stderr.splitlines() == [f"vmreconcile: {message}"]
    assert written(site.root) == before
