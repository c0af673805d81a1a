"""What the loader builds: the exact `Spec` of a file, directory merges, examples, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmreconcile.desired.load import ConfigErrors, check_config, config_files, load_spec
from vmreconcile.desired.spec import UNSET, PasswordSpec, Position, UserSpec

REPO = Path(__file__).resolve().parents[2]
VALID = REPO / "tests" / "data" / "valid"
EXAMPLES = REPO / "examples"


def users_of(spec, domain: str) -> dict[str, UserSpec]:
    return {u.name: u for d in spec.domains if d.name == domain for u in d.users}


def test_every_field_of_every_entry_is_read_exactly(monkeypatch):
    monkeypatch.chdir(VALID)
    spec = load_spec("all-fields.yaml")
    assert spec.qmail_root == "/opt/qmail/"
    assert spec.bindir == "/opt/vmreconcile/bin"
    assert spec.password_scheme == "sha512-crypt"
    assert spec.sources == ("all-fields.yaml",)
    assert spec.options == {
        "qmail-root": "/opt/qmail",
        "default-hardquota": "1073741824",
        "default-softquota": "-",
        "default-expiry": "-1",
        "user-dir-bits": "4",
        "postmaster-aliases": ("postmaster", "abuse"),
        "postmaster-email": "hostmaster@example.net",
    }
    (domain,) = spec.domains
    assert (domain.name, domain.base_user, domain.rcpthosts_file) == ("example.org", "vexample", "morercpthosts")
    assert domain.catch_all == "owner@elsewhere.example"
    assert domain.options == {"default-msgsize": "10000000", "user-dir": "mail"}
    assert domain.wildcard is False and domain.prune is False and domain.domain_aliases == ()
    assert domain.position == Position("all-fields.yaml", 17, 3)
    users = users_of(spec, "example.org")
    assert users["Henry.Ford"] == UserSpec(
        name="Henry.Ford",
        kind="user",
        password=PasswordSpec("hash", "$1$v40wIsMN$UQTGd51sXaJC1zxEreIAT1"),
        forwards=("abuse", "ops@", "ops@example.net"),
        directory="./users/Henry:Ford",
        has_mailbox=True,
        mailbox_enabled=False,
        personal="Henry Ford, Jr.",
        hard_quota=2_000_000_000,
        soft_quota=1_610_612_736,
        message_size_limit=524_288,
        message_count_limit=10_000,
        created=1795546316,
        expires=None,
        position=Position("all-fields.yaml", 25, 7),
    )
    assert users["nopass"].password == PasswordSpec("none")
    assert (users["nopass"].created, users["nopass"].expires) == (0, 1_000_000_000)
    assert users["locked"].password == PasswordSpec("hash", "!$6$saltsalt$abc")
    assert (users["locked"].created, users["locked"].expires) == (1767225600, 1814349600)
    assert users["star"].password == PasswordSpec("hash", "*")
    assert users["star"].message_count_limit is None and users["star"].hard_quota is UNSET
    assert users["selfservice"].password == PasswordSpec("unmanaged")
    assert users["filesecret"].password == PasswordSpec("file", str(VALID / "secrets" / "filesecret.txt"))
    assert users["josé"].personal == "José Müller" and users["josé"].password is UNSET
    assert users["single"] == UserSpec(
        name="single", kind="alias", forwards=("henry.ford",), position=Position("all-fields.yaml", 56, 7)
    )
    assert users["several"].forwards == ("Henry.Ford", "nopass")
    assert users["+plus"].directory == "users/+plus" and users["+plus"].has_mailbox is False
    assert users["+plus"].created == 1795546321


def test_the_howto_example_reads_as_the_howto_describes(monkeypatch):
    spec = load_spec(EXAMPLES / "howto.yaml")
    (domain,) = spec.domains
    assert (domain.name, domain.base_user, domain.wildcard, domain.catch_all) == ("mydomain.org", "myuser", True, "me")
    (me,) = domain.users
    assert me.name == "me" and me.kind == "user" and me.aliases == ("myself", "myname")
    assert me.password.kind == "hash" and me.password.value.startswith("$y$")


def test_the_multi_domain_example_merges_its_files(monkeypatch):
    for name in ("EXAMPLE_COM_ALICE", "SHOP_ORDERS_PASSWORD", "SHOP_SUPPORT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    directory = EXAMPLES / "multi-domain"
    result = check_config(directory)
    assert result.errors == [] and result.warnings == []
    spec = result.spec
    assert [d.name for d in spec.domains] == ["example.com", "shop.example"]
    assert spec.sources == tuple(str(p) for p in config_files(directory))
    assert spec.reload_command == "svc -h /service/qmail-send"
    com, shop = spec.domains
    assert com.wildcard and com.domain_aliases == ("example.net", "example-mail.org") and com.prune
    assert com.options["user-dir-bits"] == "4"
    assert shop.rcpthosts_file == "morercpthosts" and shop.catch_all is None
    users = users_of(spec, "example.com")
    assert users["alice"].password == PasswordSpec("env", "EXAMPLE_COM_ALICE")
    assert users["bob"].password == PasswordSpec("file", str(directory / "secrets" / "bob.txt"))
    assert users["carol"].password == PasswordSpec("unmanaged")


def test_secrets_are_never_read_while_loading(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(
        "domains:\n  d.example:\n    base_user: u\n    users:\n"
        "      a: {password: {env: NOT_SET_ANYWHERE}}\n"
        "      b: {password: {file: /nonexistent/secret}}\n"
    )
    spec = load_spec(config)
    assert [u.password for u in spec.domains[0].users] == [
        PasswordSpec("env", "NOT_SET_ANYWHERE"),
        PasswordSpec("file", "/nonexistent/secret"),
    ]


def test_a_directory_is_merged_in_file_name_order_and_ignores_other_files(tmp_path):
    (tmp_path / "b.yaml").write_text("domains:\n  b.example:\n    base_user: vb\n")
    (tmp_path / "a.yml").write_text("domains:\n  a.example:\n    base_user: va\n")
    (tmp_path / ".hidden.yaml").write_text("not: [valid\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("broken: [\n")
    spec = load_spec(tmp_path)
    assert [d.name for d in spec.domains] == ["a.example", "b.example"]


def test_a_syntax_error_in_one_file_does_not_hide_errors_in_another(tmp_path):
    (tmp_path / "a.yaml").write_text("domains: [\n")
    (tmp_path / "b.yaml").write_text("domains:\n  b.example:\n    base_user: vb\n    wildcard: maybe\n")
    result = check_config(tmp_path)
    assert [str(e).split(": ", 1)[0] for e in result.errors] == [f"{tmp_path}/a.yaml:2:1", f"{tmp_path}/b.yaml:4:15"]


def test_missing_and_empty_configurations_are_errors_not_tracebacks(tmp_path):
    with pytest.raises(ConfigErrors, match="no such file or directory"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(ConfigErrors, match="holds no \\*.yaml files"):
        load_spec(tmp_path)


def test_user_aliases_and_the_catch_all_stay_for_the_planner_to_expand():
    spec = load_spec(VALID / "issue-sketch.yaml")
    (domain,) = spec.domains
    me = users_of(spec, "mydomain.org")["me"]
    assert me.aliases == ("myself", "myname") and me.forwards == ("me@backup.example",)
    assert (me.hard_quota, me.message_size_limit, me.expires) == (104_857_600, 10_000_000, 1814313600)
    assert domain.catch_all == "me" and domain.options == {"default-hardquota": "104857600"}
    assert [u.name for u in domain.users] == ["me", "info"]


def test_a_symlink_in_a_configuration_directory_is_refused_and_its_target_never_shown(tmp_path):
    """A pull request can commit ``domains/x.yaml -> /etc/shadow``: validate and plan run as
    root and would echo the target's lines in diagnostics. Links inside the tree are refused,
    naming the file; the target is not read."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n")
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text("domains:\n  a.example:\n    base_user: va\n")
    (config / "x.yaml").symlink_to(secret)
    (config / "y.yml").symlink_to(config / "a.yaml")  # even a link to a file of the tree
    (config / "z.yaml").symlink_to(tmp_path)  # and a link to a directory is not skipped silently
    result = check_config(config)
    rule = "is a symbolic link; a configuration directory's files must be regular files (a link is never followed)"
    assert [str(e) for e in result.errors] == [
        f"{config}/x.yaml:1:1: cannot read: {rule}",
        f"{config}/y.yml:1:1: cannot read: {rule}",
        f"{config}/z.yaml:1:1: cannot read: {rule}",
    ]
    assert "SECRETHASH" not in "".join(str(e) for e in result.errors)


def test_the_configuration_named_on_the_command_line_may_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.yaml").write_text("domains:\n  a.example:\n    base_user: va\n")
    (tmp_path / "current").symlink_to(real)
    (tmp_path / "mail.yaml").symlink_to(real / "a.yaml")
    assert [d.name for d in load_spec(tmp_path / "current").domains] == ["a.example"]
    assert [d.name for d in load_spec(tmp_path / "mail.yaml").domains] == ["a.example"]


def test_validate_names_the_symlinked_file_and_exits_1(tmp_path):
    import subprocess
    import sys

    (tmp_path / "passwd").write_text("root:x:0:0:LEAKED-GECOS:/root:/bin/bash\n")
    config = tmp_path / "config"
    config.mkdir()
    (config / "x.yaml").symlink_to(tmp_path / "passwd")
    done = subprocess.run(
        [sys.executable, "-m", "vmreconcile", "validate", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"{config}/x.yaml:1:1: cannot read: is a symbolic link" in done.stdout
    assert "LEAKED" not in done.stdout + done.stderr
