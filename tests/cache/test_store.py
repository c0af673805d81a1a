"""The cache directory and its files are used only when nobody else could have written them.

Every failed check makes the cache absent (a miss), never an error: the tests assert both the
refusal and that nothing was loaded from the untrusted place."""

from __future__ import annotations

import hashlib
import marshal
import os

import pytest

from vmreconcile.cache.store import MAGIC, CacheStore, code_fingerprint

IS_ROOT = os.geteuid() == 0
NOBODY = 65534


@pytest.fixture
def cache_dir(tmp_path):
    path = tmp_path / "cache"
    with CacheStore.open(str(path)) as store:
        assert store is not None
        assert store.save("entry", ({"a": (1, 2)}, b"bytes"))
    return path


def load(path):
    with CacheStore.open(str(path), create=False) as store:
        return store.load("entry") if store is not None else "no store"


def test_a_saved_body_is_loaded_back_and_the_files_are_private(cache_dir):
    assert load(cache_dir) == ({"a": (1, 2)}, b"bytes")
    assert cache_dir.stat().st_mode & 0o777 == 0o700
    assert (cache_dir / "entry").stat().st_mode & 0o777 == 0o600


def test_the_directory_is_made_0700_with_its_parents(tmp_path):
    path = tmp_path / "var" / "cache" / "vmreconcile"
    with CacheStore.open(str(path)) as store:
        assert store is not None
    assert path.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o770])
def test_a_directory_others_may_use_is_not_trusted(cache_dir, mode):
    cache_dir.chmod(mode)
    assert CacheStore.open(str(cache_dir)) is None


def test_a_symlinked_directory_is_not_trusted(cache_dir, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(cache_dir)
    assert CacheStore.open(str(link)) is None


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a directory to another user")
def test_a_directory_owned_by_another_user_is_not_trusted(cache_dir):
    os.chown(cache_dir, NOBODY, NOBODY)
    assert CacheStore.open(str(cache_dir)) is None


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another user")
def test_a_file_owned_by_another_user_is_ignored(cache_dir):
    os.chown(cache_dir / "entry", NOBODY, NOBODY)
    assert load(cache_dir) is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_may_read_or_write_is_ignored(cache_dir, mode):
    (cache_dir / "entry").chmod(mode)
    assert load(cache_dir) is None


def test_a_file_with_a_second_link_or_a_symlink_is_ignored(cache_dir):
    os.link(cache_dir / "entry", cache_dir / "other")
    assert load(cache_dir) is None
    os.unlink(cache_dir / "other")
    os.rename(cache_dir / "entry", cache_dir / "real")
    (cache_dir / "entry").symlink_to("real")
    assert load(cache_dir) is None


@pytest.mark.parametrize("where", ["magic", "digest", "body", "truncated", "appended"])
def test_a_corrupt_file_is_ignored(cache_dir, where):
    path = cache_dir / "entry"
    raw = bytearray(path.read_bytes())
    if where == "magic":
        raw[0] ^= 1
    elif where == "digest":
        raw[len(MAGIC)] ^= 1
    elif where == "body":
        raw[-1] ^= 1
    elif where == "truncated":
        del raw[-3:]
    else:
        raw += b"x"
    path.write_bytes(bytes(raw))
    assert load(cache_dir) is None


def forge(path, name, fingerprint, body):
    """A file that passes the checksum, as its owner could write it."""
    payload = marshal.dumps((name, fingerprint, body))
    path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    path.chmod(0o600)


def test_an_entry_written_by_other_code_or_under_another_name_is_ignored(cache_dir):
    forge(cache_dir / "entry", "entry", "another version", {"x": 1})
    assert load(cache_dir) is None
    forge(cache_dir / "entry", "other-name", code_fingerprint(), {"x": 1})
    assert load(cache_dir) is None
    forge(cache_dir / "entry", "entry", code_fingerprint(), {"x": 1})
    assert load(cache_dir) == {"x": 1}


def test_a_fifo_in_place_of_a_file_does_not_block(cache_dir):
    os.unlink(cache_dir / "entry")
    os.mkfifo(cache_dir / "entry", 0o600)
    assert load(cache_dir) is None


def test_an_unwritable_cache_is_no_error(cache_dir):
    (cache_dir / "entry").unlink()
    (cache_dir / "entry").mkdir()
    with CacheStore.open(str(cache_dir)) as store:
        assert store.save("entry", (1,)) is False
        assert store.load("entry") is None
