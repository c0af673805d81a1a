"""{env:} and {file:} secrets: read at plan time, bounded, never hanging, errors naming the secret not its value."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from tests.clirunner import cli_runner
from tests.conftest import build_step_root
from tests.fleet.treedigest import tree_digest
from vmreconcile.cli.main import app
from vmreconcile.plan.resolve import SecretUnavailable
from vmreconcile.workflow import MAX_SECRET_BYTES, secret_reader


def refusal(read, kind, ref) -> tuple[str, bool]:
    with pytest.raises(SecretUnavailable) as caught:
        read(kind, ref)
    return str(caught.value), caught.value.missing


def test_a_file_secret_is_its_content_without_trailing_newlines(tmp_path):
    (tmp_path / "pw").write_bytes(b"s3cret pass\r\n\n")
    read = secret_reader(tmp_path)
    assert read("file", "pw") == "s3cret pass"  # relative to the configuration's directory
    assert read("file", str(tmp_path / "pw")) == "s3cret pass"


def test_a_file_secret_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(tmp_path):
    (tmp_path / "pw").write_bytes(b"x" * MAX_SECRET_BYTES)
    read = secret_reader(tmp_path)
    assert read("file", "pw") == "x" * MAX_SECRET_BYTES
    (tmp_path / "pw").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    assert refusal(read, "file", "pw") == ("larger than 4,096 bytes", False)


@pytest.mark.parametrize(
    "content, why",
    [(b"", "empty"), (b"\n", "empty"), (b"one\ntwo\n", "more than one line"), (b"a\0b", "contains a NUL character")],
)
def test_a_file_secret_no_password_can_be_made_of_is_refused(tmp_path, content, why):
    (tmp_path / "pw").write_bytes(content)
    assert refusal(secret_reader(tmp_path), "file", "pw") == (why, False)


def test_a_missing_file_secret_says_so_and_counts_as_missing(tmp_path):
    assert refusal(secret_reader(tmp_path), "file", "nope") == ("no such file", True)


def test_a_fifo_secret_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pw")
    assert refusal(secret_reader(tmp_path), "file", "pw") == ("not a regular file (a FIFO)", False)


def test_dev_zero_behind_a_secret_name_is_refused_without_reading_it(tmp_path):
    (tmp_path / "pw").symlink_to("/dev/zero")
    assert refusal(secret_reader(tmp_path), "file", "pw") == ("not a regular file (a character device)", False)


def test_a_directory_is_not_a_secret(tmp_path):
    assert refusal(secret_reader(tmp_path), "file", str(tmp_path)) == ("not a regular file (a directory)", False)


def test_env_secrets_are_taken_as_they_are_or_refused_saying_why(tmp_path, monkeypatch):
    read = secret_reader(tmp_path)
    monkeypatch.setenv("VMR_TEST_PW", "from env")
    assert read("env", "VMR_TEST_PW") == "from env"
    monkeypatch.setenv("VMR_TEST_PW", "")
    assert refusal(read, "env", "VMR_TEST_PW") == ("empty", False)
    monkeypatch.setenv("VMR_TEST_PW", "a\nb")
    assert refusal(read, "env", "VMR_TEST_PW") == ("more than one line", False)
    monkeypatch.delenv("VMR_TEST_PW")
    assert refusal(read, "env", "VMR_TEST_PW") == ("not set", True)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    build_step_root("03-vaddalias", root)
    return root


def plan_with_secret(site, tmp_path, ref: str):
    config = tmp_path / "mail.yaml"
    config.write_text(
        f"domains:\n  mydomain.org:\n    base_user: vbase1\n    users:\n      me:\n        password: {{file: {ref}}}\n"
    )
    return cli_runner().invoke(app, ["--root", str(site), "plan", str(config)], catch_exceptions=False)


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda p: os.mkfifo(p), "not a regular file (a FIFO)"),
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file (a character device)"),
        (lambda p: p.write_bytes(b"x" * 5000), "larger than 4,096 bytes"),
        (lambda p: p.write_bytes(b"secret-one\nsecret-two\n"), "more than one line"),
        (lambda p: None, "no such file"),
    ],
)
def test_plan_with_an_unusable_file_secret_exits_1_naming_user_and_file_and_writes_nothing(site, tmp_path, make, why):
    secret = tmp_path / "me.pw"
    make(secret)
    before = tree_digest(site)
    result = plan_with_secret(site, tmp_path, str(secret))
    assert result.exit_code == 1
    assert result.stderr == f"vmreconcile: mydomain.org/me: password secret {{file: {secret}}}: {why}\n"
    assert "secret-one" not in result.output
    assert tree_digest(site) == before


def test_plan_reading_dev_zero_as_a_secret_stays_small_under_a_memory_limit(site, tmp_path):
    """Under RLIMIT_AS a read of /dev/zero would die of MemoryError; the refusal keeps it small."""
    secret = tmp_path / "zero"
    secret.symlink_to("/dev/zero")
    config = tmp_path / "mail.yaml"
    config.write_text(
        f"domains:\n  mydomain.org:\n    base_user: vbase1\n    users:\n      me:\n        password: {{file: {secret}}}\n"
    )

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1024 * 2**20, 1024 * 2**20))

    result = subprocess.run(
        [sys.executable, "-m", "vmreconcile", "--root", str(site), "plan", str(config)],
        capture_output=True,
        text=True,
        preexec_fn=limits,
    )
    assert result.returncode == 1
    assert result.stderr.endswith(f"{{file: {secret}}}: not a regular file (a character device)\n")
