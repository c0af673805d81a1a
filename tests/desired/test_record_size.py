"""validate refuses an entry whose table record would be larger than the readers take
(`formats.cdb.MAX_RECORD_SIZE`), so apply never writes a table every login then refuses."""

from __future__ import annotations

import subprocess
import sys

from vmreconcile.desired.load import check_config
from vmreconcile.desired.semantics import RECORD_ALLOWANCE
from vmreconcile.formats.cdb import MAX_RECORD_SIZE
from vmreconcile.formats.hashing import SCHEMES, hash_password
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.model import UINT_MAX, VirtualUser

#: 20 bytes in the record each (19 characters and a NUL).
FORWARD = "m{:06d}@example.net"
#: The most such forwards "list" may have: 5 (name) + 20 N + 3 (three empty texts) + allowance.
LARGEST = (MAX_RECORD_SIZE - RECORD_ALLOWANCE - 8) // 20


def config(forwards: int) -> str:
    lines = ["domains:", "  example.org:", "    base_user: vmr1", "    aliases:", "      list:", "        forwards:"]
    lines += [f"          - {FORWARD.format(i)}" for i in range(forwards)]
    return "\n".join([*lines, "    users:", "      me:", "        password: '*'", ""])


def test_the_largest_forward_list_passes_and_one_more_is_refused(tmp_path):
    path = tmp_path / "mail.yaml"
    path.write_text(config(LARGEST))
    assert check_config(path).errors == []
    path.write_text(config(LARGEST + 1))
    assert [str(e) for e in check_config(path).errors] == [
        f'{path}:5:7: domains["example.org"].aliases.list: its table record would hold about '
        f"{8 + 20 * (LARGEST + 1) + RECORD_ALLOWANCE:,} bytes "
        f"({LARGEST + 1} forwards), more than the 65,536 one record may have: the login and delivery programs "
        "refuse such a record (a list this long belongs in a mailing-list manager)"
    ]


def test_validate_exits_1_on_such_an_entry(tmp_path):
    path = tmp_path / "mail.yaml"
    path.write_text(config(4000))
    done = subprocess.run([sys.executable, "-m", "vmreconcile", "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "aliases.list: its table record would hold about 81,0" in done.stdout


def test_what_validate_passes_fits_a_record_whatever_resolve_adds():
    """The allowance covers what validate cannot see: the longest hash vmreconcile makes, the
    default directory, every number at its longest."""
    longest_hash = max((hash_password("x", scheme) for scheme in SCHEMES), key=len)
    worst = VirtualUser(
        name="list",
        password=longest_hash,
        directory="./users/list",
        forwards=tuple(FORWARD.format(i) for i in range(LARGEST)),
        hard_quota=UINT_MAX - 1,
        soft_quota=UINT_MAX - 1,
        message_size_limit=UINT_MAX - 1,
        message_count_limit=UINT_MAX - 1,
        created=UINT_MAX - 1,
        expires=UINT_MAX - 1,
    )
    assert len(user_key(worst.name)) + len(encode_record(worst)) <= MAX_RECORD_SIZE
