"""Can libxcrypt check a password against this stored hash? Asked of libxcrypt, at bounded cost.

A hash libxcrypt cannot use (``$1$`` alone, a trailing space, bcrypt cost 99, a checksum cut
short) is stored without complaint and locks its user out: no password ever matches. So
validate asks the library that will check the logins ([compat: hashing]) instead of guessing
by pattern: it hashes a probe password with the stored value as the setting, exactly as a
login does, and the hash is usable only if libxcrypt accepts the setting and its answer has
the stored value's shape — the same settings echoed back, the same length, a checksum of
crypt's own characters (``./0-9A-Za-z``).

Two costs are bounded:

* Time: a config holds one hash per user, each with its own salt, and a probe costs what a
  login costs (yescrypt: tens of milliseconds). Hashes are grouped by *shape*: the hash with
  its salt and checksum characters masked, parameters kept (``$y$j9T$<22>$<43>``); a
  100,000-user config usually has one or two. A group is probed member by member until one
  is usable, and then the rest of the group is judged usable too: they differ from it only in
  salt and checksum characters of the same alphabet and lengths. Members probed before that
  are judged one by one (a yescrypt salt that does not decode, a bcrypt salt libxcrypt
  rewrites). A value-level fault the shape hides in an unprobed member (such a salt after a
  good one, a checksum whose last character has bits crypt never sets) is not caught.
* A hostile setting: ``$6$rounds=999999999$`` or a yescrypt cost that wants gigabytes would
  make validate run for minutes or eat memory, and every login pay the same. Cost parameters
  over `formats.hashcost`'s limits (the runtime's too: checkvpw, authpipe and vauthd refuse
  such a hash) are refused before any probe. Probes run in a forked child with a CPU
  timer of `PROBE_CPU_SECONDS` per probe, `PROBE_TOTAL_CPU_SECONDS` in all and an
  address-space limit; a probe that runs out is reported as too costly (every login would pay
  it too), and what the total budget leaves unchecked is an error, never a pass.
"""

from __future__ import annotations

import os
import re
import resource
import select
import signal
import struct
from collections.abc import Iterable

from ..formats.hashcost import MAX_CHECK_CPU_SECONDS, cost_problem
from ..formats.hashing import HashingError, crypt

#: A probe (one crypt call) may use this much CPU; a login pays the same.
PROBE_CPU_SECONDS = MAX_CHECK_CPU_SECONDS
#: All probes of one validate together may use this much CPU.
PROBE_TOTAL_CPU_SECONDS = 60
#: The prober may grow by this much memory beyond what validate already holds.
PROBE_EXTRA_MEMORY = 1024 * 1024 * 1024
#: Wall-clock wait for one probe's answer before the prober is killed (a swapping machine).
PROBE_WALL_SECONDS = 30
#: What crypt(3) writes in a checksum (and in the salts vmreconcile masks).
CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MASK = str.maketrans({ch: "\x01" for ch in CRYPT_ALPHABET})
_BCRYPT = re.compile(r"\$2[abxy]?\$[0-9]{2}\$")
#: Methods whose salt is the ``$``-field before the checksum (the others keep their salt).
_SALTED_FIELDS = ("$y$", "$gy$", "$1$", "$5$", "$6$", "$sha1$", "$md5")
_PROBE = b"vmreconcile-probe"
#: How the warning starts when no hash could be checked (no libxcrypt).
NOT_CHECKED = "password hashes were not checked"
_TOO_COSTLY = object()


class _Unchecked:
    """No answer: the total budget was spent, or no prober could be started; never a pass."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


#: Shapes a probe found usable, and hashes found unusable, in this process (bounded).
_usable_shapes: set[str] = set()
_unusable: dict[str, str] = {}
_MEMO_LIMIT = 4096


def unusable_hashes(values: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """``({hash: why it cannot be used}, warning)`` for stored crypt hashes.

    ``warning`` is set (and nothing is judged) when this machine has no libxcrypt to ask.
    """
    try:
        crypt(_PROBE, b"$1$probe$")  # loads libxcrypt here, once, not in every prober
    except HashingError as exc:
        return {}, f"{NOT_CHECKED}: {exc}"
    problems: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for value in dict.fromkeys(values):
        known = _unusable.get(value)
        if known is not None:
            problems[value] = known
            continue
        costly = cost_problem(value)
        if costly is not None:
            problems[value] = (
                f"checking a password against this hash costs too much ({costly}): every login would "
                "pay that, and the login programs refuse it; use cheaper settings"
            )
            continue
        shape = _shape(value)
        if shape not in _usable_shapes:
            groups.setdefault(shape, []).append(value)
    if groups:
        shapes = list(groups)
        for (group, member), answer in _probe_groups([groups[shape] for shape in shapes]).items():
            value = groups[shapes[group]][member]
            why = _judge(value, answer)
            if why is None:
                _remember(_usable_shapes, shapes[group])
            else:
                problems[value] = why
                if len(_unusable) < _MEMO_LIMIT:
                    _unusable[value] = why
    return problems, None


def _remember(memo: set[str], shape: str) -> None:
    if len(memo) < _MEMO_LIMIT:
        memo.add(shape)


def _spans(stored: str) -> tuple[int, int, int]:
    """``(salt start, salt end, checksum start)`` by crypt(5)'s layouts: bcrypt's 22 salt
    characters then the checksum; the other ``$id$`` methods' salt is the ``$``-field before
    the checksum (for the methods in `_SALTED_FIELDS`; the others' salt is left in the shape);
    BSDi ``_`` + 4 count + 4 salt; DES 2 salt. An empty salt span where there is none."""
    if stored[:1] == "$":
        if stored[1:2] == "2":
            bcrypt = _BCRYPT.match(stored)
            if bcrypt:
                end = bcrypt.end()
                return end, end + 22, end + 22
        checksum = stored.rfind("$") + 1
        if stored.startswith(_SALTED_FIELDS):
            start = stored.rfind("$", 0, checksum - 1) + 1
            if start >= 3:  # else the '$' found is the method's own: no salt field
                return start, checksum - 1, checksum
        return 0, 0, checksum
    if stored[:1] == "_":
        return 5, 9, 9
    return 0, 2, 2


def _checksum_start(stored: str) -> int:
    return _spans(stored)[2]


def _shape(stored: str) -> str:
    """``stored`` with its salt and checksum characters masked: hashes of one shape are parsed
    alike by libxcrypt, so one usable member vouches for the others."""
    start, end, checksum = _spans(stored)
    return (
        stored[:start]
        + stored[start:end].translate(_MASK)
        + stored[end:checksum]
        + stored[checksum:].translate(_MASK)
        + f"\x02{len(stored)}"
    )


def _judge(stored: str, answer: object) -> str | None:
    """Why ``stored`` is unusable, given libxcrypt's hash of the probe with it as the setting."""
    cannot = "libxcrypt cannot check a password against this hash"
    if answer is _TOO_COSTLY:
        return (
            f"checking a password against this hash takes more than {PROBE_CPU_SECONDS} s of CPU "
            "(or too much memory): every login would pay that; use cheaper settings"
        )
    if isinstance(answer, _Unchecked):
        return f"not checked: {answer.reason}"
    if not isinstance(answer, bytes):
        return (
            f"{cannot} (an unknown method, bad settings, or settings that need more than "
            f"{PROBE_EXTRA_MEMORY // 2**30} GiB of memory): no login would ever succeed"
        )
    made = answer.decode("utf-8", "surrogateescape")
    checksum = _checksum_start(stored)
    if len(made) != len(stored):
        return (
            f"{cannot}: with these settings its hashes are {len(made)} characters long, this one "
            f"is {len(stored)} (cut short, or extra characters): no login would ever succeed"
        )
    if made[:checksum] != stored[:checksum]:
        return f"{cannot}: it reads the settings (method, cost, salt) differently: no login would ever succeed"
    if stored[checksum:].strip(CRYPT_ALPHABET):
        return f"{cannot}: the checksum has characters crypt never writes: no login would ever succeed"
    return None


def _probe_groups(groups: list[list[str]]) -> dict[tuple[int, int], object]:
    """libxcrypt's answers ``{(group, member): hash of the probe, None (refused), _TOO_COSTLY or
    an _Unchecked}`` for the members each group needs probed (up to its first usable one), made in
    forked children under the CPU timers and the memory limit; a child that dies of its
    per-probe timer is replaced, from the next member on, until the total budget is spent."""
    answers: dict[tuple[int, int], object] = {}
    position = (0, 0)
    budget = float(PROBE_TOTAL_CPU_SECONDS)
    unchecked = _Unchecked(
        f"asking libxcrypt about this configuration's hashes took more than {budget:g} s of CPU in all"
    )
    while position[0] < len(groups):
        try:
            records, fate, used = _run_prober(groups, position, budget)
        except OSError as exc:  # no fork (a process limit, a sandbox): judge nothing, pass nothing
            records, fate, used = [], "failed", 0.0
            unchecked = _Unchecked(f"the process that asks libxcrypt could not be started ({exc.strerror or exc})")
        budget -= used
        for group, member, answer in records:
            answers[(group, member)] = answer
            usable = _judge(groups[group][member], answer) is None
            position = (group + 1, 0) if usable or member + 1 == len(groups[group]) else (group, member + 1)
        if fate == "done" or position[0] >= len(groups):
            break
        group, member = position
        if fate == "probe" and budget > 0:
            answers[position] = _TOO_COSTLY
            position = (group + 1, 0) if member + 1 == len(groups[group]) else (group, member + 1)
            continue
        for group_index in range(group, len(groups)):  # the total budget is spent: nothing passes
            for member_index in range(member if group_index == group else 0, len(groups[group_index])):
                answers[(group_index, member_index)] = unchecked
        break
    return answers


def _run_prober(
    groups: list[list[str]], position: tuple[int, int], budget: float
) -> tuple[list[tuple[int, int, object]], str, float]:
    """One forked prober from ``position`` on: its records, how it ended ("done", "probe": its
    per-probe timer, "budget": the total CPU or wall clock) and the CPU it used."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        status = 1
        try:
            os.close(read_end)
            _limit_child(budget)
            first_group, first_member = position
            for group in range(first_group, len(groups)):
                members = groups[group]
                for member in range(first_member if group == first_group else 0, len(members)):
                    stored = members[member]
                    signal.setitimer(signal.ITIMER_PROF, PROBE_CPU_SECONDS)
                    answer = crypt(_PROBE, stored.encode("utf-8", "surrogateescape"))
                    signal.setitimer(signal.ITIMER_PROF, 0)
                    record = b"" if answer is None else answer
                    os.write(write_end, struct.pack(">IIbI", group, member, answer is not None, len(record)) + record)
                    if _judge(stored, answer) is None:
                        break
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    data = b""
    killed = False
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], PROBE_WALL_SECONDS)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        _, status, usage = os.wait4(pid, 0)
    records: list[tuple[int, int, object]] = []
    offset = 0
    while offset + 13 <= len(data):
        group, member, ok, size = struct.unpack_from(">IIbI", data, offset)
        if offset + 13 + size > len(data):
            break
        records.append((group, member, data[offset + 13 : offset + 13 + size] if ok else None))
        offset += 13 + size
    used = usage.ru_utime + usage.ru_stime
    if not killed and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        fate = "done"
    elif not killed and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGPROF:
        fate = "probe"
    else:
        fate = "budget"
    return records, fate, used


def _limit_child(budget: float) -> None:  # pragma: no cover - runs in the child
    """The prober's limits: SIGPROF (the per-probe timer) and SIGXCPU (the total budget) end it
    (their default actions), memory is capped."""
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    seconds = max(1, int(budget + 0.999))
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        seconds = min(seconds, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, hard))
    try:
        with open("/proc/self/statm", "rb") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return
    limit = size + PROBE_EXTRA_MEMORY
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
