"""The history directory: one entry per apply or rollback, crash-safe, root-only, bounded.

Layout of ``/var/lib/vmreconcile/history/`` (mode 0700; ``--root`` moves it)::

    000007/entry.json      a complete entry: who, when, which configuration, the changes,
    000007/before-0        and the previous bytes of every regular file it replaced or removed
    .prepare-000008/       an entry being prepared (its apply has not written anything yet)
    .pending-000008/       prepared and durable; its apply is writing
    .prune-000002/         an old entry being deleted

When the entry is committed, relative to the apply's writes: it is *prepared* before the first
write (every "before" file and ``entry.json`` written, each ``fsync``ed, the directory renamed
from ``.prepare-N`` to ``.pending-N``, the history directory ``fsync``ed) and *committed* after
the last one (the final ``entry.json`` replaced atomically, then ``.pending-N`` renamed to
``N``). Only ``N`` directories are entries, so a SIGKILL at any point leaves no entry or a
complete one. What a killed apply leaves is dealt with by the next apply, rollback or history
listing, under the global lock: a ``.prepare-N`` is removed (nothing was written yet), a
``.pending-N`` is *recovered*: committed with outcome ``interrupted`` and the files as they
are now as its "after", so even a half-finished apply can be rolled back. Old entries beyond
the retention are renamed to ``.prune-N`` before they are deleted, so a kill never leaves half
an entry behind either.

The retention is a number of entries (``history.keep``) *and* a byte budget for the whole
directory (`MAX_BYTES`): each entry holds copies of whole tables (up to the table cap each), so
a count alone lets a few tenants with big tables fill ``/var``. The oldest entries go first;
the entry just written always stays. One entry whose copies alone exceed the budget is
recorded without the largest of them (each such file is recorded as ``other`` with a
``not_kept`` reason, as a file past the table cap is): the apply goes on, and rollback says
which files it cannot bring back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from ..apply.crashpoint import checkpoint
from ..atomic import write_file
from .files import FileRef, FileState

ENTRY_FILE = "entry.json"
FORMAT_VERSION = 1
PREPARE, PENDING, PRUNE = ".prepare-", ".pending-", ".prune-"
#: The byte budget of the history directory (every complete entry together): 1 GiB, sixteen
#: copies of a table at the table cap.
MAX_BYTES = 1 << 30

Log = Callable[[str], None]


class HistoryError(OSError):
    """The history directory cannot be used (not ours, a symlink, an unknown entry)."""


def entry_name(entry_id: int) -> str:
    return f"{entry_id:06d}"


class Store:
    """The entries under one history directory."""

    def __init__(self, directory: Path, max_bytes: int | None = None) -> None:
        self.directory = directory
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes

    # -- the directory ------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the directory root-only (0700) or check that it is a real directory of ours."""
        self.directory.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.directory, 0o700)
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode):
            raise HistoryError(errno.ENOTDIR, f"{self.directory} is not a directory; refusing to use it for history")
        if info.st_uid != os.geteuid():
            raise HistoryError(
                errno.EPERM, f"{self.directory} belongs to uid {info.st_uid}, not to us; refusing to use it"
            )
        if info.st_mode & 0o077:
            os.chmod(self.directory, 0o700)

    def exists(self) -> bool:
        return self.directory.is_dir()

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.directory)
        except FileNotFoundError:
            return []

    def ids(self) -> list[int]:
        """The complete entries, oldest first."""
        return sorted(int(n) for n in self._names() if n.isdigit())

    def leftovers(self, prefix: str) -> list[int]:
        return sorted(
            int(n[len(prefix) :]) for n in self._names() if n.startswith(prefix) and n[len(prefix) :].isdigit()
        )

    def next_id(self) -> int:
        """One more than any id in use (complete, pending, being pruned): ids are never reused."""
        used = [int(n.rsplit("-", 1)[-1]) for n in self._names() if n.rsplit("-", 1)[-1].isdigit()]
        return max(used, default=0) + 1

    # -- reading ------------------------------------------------------------------------------

    def load(self, entry_id: int) -> dict[str, object]:
        path = self.directory / entry_name(entry_id) / ENTRY_FILE
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            known = ", ".join(str(i) for i in self.ids()) or "none"
            raise HistoryError(errno.ENOENT, f"no history entry {entry_id} (entries: {known})") from None
        except ValueError as exc:
            raise HistoryError(errno.EINVAL, f"{path}: not a history entry ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
            raise HistoryError(errno.EINVAL, f"{path}: not a history entry of format {FORMAT_VERSION}")
        return doc

    def entries(self) -> list[dict[str, object]]:
        return [self.load(i) for i in self.ids()]

    def size(self, entry_id: int) -> int:
        """The bytes an entry takes: its files' sizes (its blobs and ``entry.json``)."""
        path = self.directory / entry_name(entry_id)
        total = 0
        for name in os.listdir(path):
            info = os.lstat(path / name)
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
        return total

    def blob(self, entry_id: int, name: str) -> bytes:
        if "/" in name or name.startswith("."):
            raise HistoryError(errno.EINVAL, f"entry {entry_id}: bad blob name {name!r}")
        return (self.directory / entry_name(entry_id) / name).read_bytes()

    # -- writing ------------------------------------------------------------------------------

    def begin(self, meta: dict[str, object], files: list[tuple[FileRef, FileState]]) -> Pending:
        """Prepare an entry and make it durable (call before the first write of the apply)."""
        entry_id = self.next_id()
        prepare = self.directory / (PREPARE + entry_name(entry_id))
        os.mkdir(prepare, 0o700)
        dropped = over_budget([before for _, before in files], self.max_bytes)
        records = []
        for index, (ref, before) in enumerate(files):
            blob, note = None, None
            if index in dropped:
                note = f"{len(before.data or b'')} bytes, over the history's budget of {self.max_bytes} bytes"
                before = not_kept(before)
            if before.type == "file" and before.data is not None:
                blob = f"before-{index}"
                _write_synced(prepare / blob, before.data)
            state = before.as_json(blob)
            if note is not None:
                state["not_kept"] = note
            records.append({**ref.as_json(), "before": state, "after": None})
        doc = {"format_version": FORMAT_VERSION, "id": entry_id, **meta, "outcome": None, "files": records}
        _write_synced(prepare / ENTRY_FILE, _dump(doc))
        _fsync_dir(prepare)
        checkpoint("history: entry prepared")
        pending = self.directory / (PENDING + entry_name(entry_id))
        os.rename(prepare, pending)
        _fsync_dir(self.directory)
        checkpoint("history: entry pending")
        return Pending(self, entry_id, pending, doc)

    def pending(self, entry_id: int) -> Pending:
        path = self.directory / (PENDING + entry_name(entry_id))
        doc = json.loads((path / ENTRY_FILE).read_bytes())
        return Pending(self, entry_id, path, doc)

    def clear_unprepared(self) -> list[int]:
        """Remove what killed applies and prunes left before any write: ``.prepare-N``, ``.prune-N``."""
        removed = []
        for prefix in (PREPARE, PRUNE):
            for entry_id in self.leftovers(prefix):
                shutil.rmtree(self.directory / (prefix + entry_name(entry_id)), ignore_errors=True)
                if prefix == PREPARE:
                    removed.append(entry_id)
        return removed

    def prune(self, keep: int) -> list[int]:
        """Delete the oldest complete entries beyond the newest ``keep`` and, oldest first, those
        past the byte budget (`MAX_BYTES`); the newest entry (the one just written) always stays."""
        ids = self.ids()
        old = ids[: max(0, len(ids) - max(1, keep))]
        kept = ids[len(old) :]
        sizes = {entry_id: self.size(entry_id) for entry_id in kept}
        total = sum(sizes.values())
        for entry_id in kept[:-1]:
            if total <= self.max_bytes:
                break
            old.append(entry_id)
            total -= sizes[entry_id]
        for entry_id in old:
            doomed = self.directory / (PRUNE + entry_name(entry_id))
            os.rename(self.directory / entry_name(entry_id), doomed)  # gone from the list at once
            shutil.rmtree(doomed, ignore_errors=True)
        if old:
            _fsync_dir(self.directory)
        return old


class Pending:
    """A prepared entry whose apply is writing; `commit` makes it an entry."""

    def __init__(self, store: Store, entry_id: int, path: Path, doc: dict[str, object]) -> None:
        self.store = store
        self.id = entry_id
        self.path = path
        self.doc = doc

    @property
    def refs(self) -> list[FileRef]:
        files = self.doc.get("files")
        return [FileRef.from_json(f) for f in files] if isinstance(files, list) else []

    def commit(self, *, outcome: str, afters: list[FileState], **extra: object) -> dict[str, object]:
        """Record how the apply ended and the files as they are now; the entry becomes visible."""
        files = self.doc.get("files")
        assert isinstance(files, list) and len(files) == len(afters)
        for record, after in zip(files, afters, strict=True):
            record["after"] = after.as_json()
        self.doc.update(extra)
        self.doc["outcome"] = outcome
        write_file(self.path / ENTRY_FILE, _dump(self.doc), mode=0o600)
        checkpoint("history: entry written")
        return self.finalize()

    def finalize(self) -> dict[str, object]:
        """The rename that makes a written entry visible (alone: when a kill came in between)."""
        os.rename(self.path, self.store.directory / entry_name(self.id))
        _fsync_dir(self.store.directory)
        checkpoint("history: entry committed")
        return self.doc

    def discard(self) -> None:
        """The apply changed nothing after all: no entry."""
        shutil.rmtree(self.path, ignore_errors=True)


def over_budget(befores: list[FileState], budget: int) -> set[int]:
    """The indexes of the copies one entry leaves out to stay within ``budget``: none when they
    fit, else the largest first until the rest fits."""
    sizes = {i: len(b.data) for i, b in enumerate(befores) if b.type == "file" and b.data is not None}
    total = sum(sizes.values())
    dropped = set()
    for index in sorted(sizes, key=lambda i: (-sizes[i], i)):
        if total <= budget:
            break
        dropped.add(index)
        total -= sizes[index]
    return dropped


def not_kept(before: FileState) -> FileState:
    """``before`` without its bytes: recorded as ``other`` (rollback cannot bring it back)."""
    return FileState(type="other", mode=before.mode, uid=before.uid, gid=before.gid, mtime_ns=before.mtime_ns)


def _dump(doc: dict[str, object]) -> bytes:
    return (json.dumps(doc, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
