"""vauthd's event loop and program, over real UNIX sockets, without Dovecot.

The loop runs in a thread of the test process against a rooted fixture host (no root needed);
the program tests run the installed launcher as Dovecot's side would find it. Time limits are
shrunk where a test waits for a timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import IS_ROOT, build_step_root
from test_authpipe_support import STEP, world_dir
from vauthdkit import HELLO, ask, lookup_line

from vmreconcile.formats.cdb import build_cdb
from vmreconcile.formats.vpwentry import encode_record, user_key
from vmreconcile.host import Host
from vmreconcile.install import install_runtime
from vmreconcile.model import VirtualUser
from vmreconcile.runtime.dovecot.answers import Answers
from vmreconcile.runtime.dovecot.server import Limits, Server
from vmreconcile.runtime.dovecot.tablecache import CopiedTables
from vmreconcile.runtime.dovecot.vauthd import make_handler

ME = lookup_line("shared/passdb/me@mydomain.org")


@pytest.fixture
def root() -> Iterator[Path]:
    with world_dir("vmr-vauthd-srv-") as top:
        build_step_root(STEP, top / "root")
        yield top / "root"


class Running:
    def __init__(self, path: Path, server: Server, logged: list[str]) -> None:
        self.path = path
        self.server = server
        self.logged = logged
        self.clients: list[socket.socket] = []

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.clients.append(sock)
        sock.settimeout(10)
        sock.connect(str(self.path))
        return sock


@contextmanager
def running(root: Path, limits: Limits | None = None, handler=None) -> Iterator[Running]:
    path = root.parent / "vauthd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    logged: list[str] = []
    answers = Answers(CopiedTables(Host(root)), logged.append)
    server = Server(listener, handler or make_handler(answers), limits, logged.append)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    handle = Running(path, server, logged)
    try:
        yield handle
    finally:
        for client in handle.clients:
            client.close()
        server.stop()
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"
        listener.close()
        path.unlink()


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n")[:count]


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_hello_then_lookups_on_one_connection(root):
    with running(root) as server:
        sock = server.connect()
        sock.sendall(HELLO + ME)  # Dovecot's first write: hello and lookup together
        assert read_lines(sock, 1)[0].startswith(b'O{"password":"{CRYPT}$1$')
        for _ in range(3):  # idle_msecs: later lookups in separate writes
            sock.sendall(lookup_line("shared/userdb/nosuchuser@mydomain.org"))
            assert read_lines(sock, 1) == [b"N"]
        sock.close()


def test_pipelined_requests_are_answered_in_order(root):
    with running(root) as server:
        keys = ["shared/passdb/me@mydomain.org", "shared/passdb/x@mydomain.org", "shared/userdb/alice@mydomain.org"]
        out = ask(server.path, HELLO + b"".join(lookup_line(k) for k in keys) * 50)
        lines = out.split(b"\n")[:-1]
        assert len(lines) == 150
        assert [line[:1] for line in lines] == [b"O", b"N", b"O"] * 50


def test_a_stalled_client_does_not_hold_up_others(root):
    with running(root) as server:
        stalled = server.connect()
        stalled.sendall(HELLO + b"Lshared/passdb/me@myd")  # half a request, then nothing
        reader = server.connect()
        reader.sendall(HELLO + b"I0\t0\tshared/userdb/\t*\n")  # and never reads the answer
        started = time.monotonic()
        for _ in range(20):
            assert ask(server.path, HELLO + ME).startswith(b"O")
        assert time.monotonic() - started < 5
        stalled.sendall(b"omain.org\t\n")  # the rest arrives: answered normally
        assert read_lines(stalled, 1)[0].startswith(b"O")


def test_large_iteration_is_produced_as_the_client_reads(root):
    """A reader that stops: the server holds at most about one chunk for it, others go on."""
    home = root / "home" / "vbase1"
    users = [VirtualUser(name=f"user{n:05d}", password="$0$p", directory=f"./users/user{n:05d}") for n in range(20000)]
    (home / "passwd.cdb").write_bytes(build_cdb([(user_key(u.name), encode_record(u)) for u in users]))
    limits = Limits(output_chunk=4096)
    with running(root, limits) as server:
        slow = server.connect()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(HELLO + b"I0\t0\tshared/userdb/\t*\n")
        time.sleep(0.5)
        pending = [c for c in server.server.connections.values() if c.rows is not None]
        assert len(pending) == 1 and len(pending[0].outbuf) < 2 * limits.output_chunk
        assert ask(server.path, HELLO + lookup_line("shared/userdb/user00007@mydomain.org")).startswith(b"O")
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = slow.recv(65536)
            assert chunk, "connection closed before the end of the listing"
            data += chunk
        rows = data.split(b"\n")[:-2]
        assert len(rows) == 20000 and rows[0] == b"Oshared/userdb/user00000@mydomain.org\t"


def test_a_vanished_client_mid_iteration_costs_nothing(root):
    with running(root, Limits(output_chunk=512)) as server:
        for _ in range(5):
            gone = server.connect()
            gone.sendall(HELLO + b"I0\t0\tshared/userdb/\t*\n")
            gone.close()
        assert ask(server.path, HELLO + ME).startswith(b"O")
        deadline = time.monotonic() + 5
        while len(server.server.connections) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.server.connections == {}


def test_overlong_lines_are_refused_without_being_kept(root):
    limits = Limits(max_line=1000)
    with running(root, limits) as server:
        answer_me = ask(server.path, HELLO + ME)
        assert ask(server.path, HELLO + b"L" + b"x" * 2000 + b"\n" + ME) == b"Frequest too long\n" + answer_me
        sock = server.connect()
        sock.sendall(HELLO + b"L" + b"x" * 5000)  # written in pieces: the same answer once the line ends
        time.sleep(0.2)
        for _ in range(20):
            sock.sendall(b"y" * 5000)
        pending = [c for c in server.server.connections.values() if c.skipping is not None]
        time.sleep(0.2)
        assert len(pending) == 1 and len(pending[0].inbuf) <= 65536  # thrown away, not collected
        sock.sendall(b"\n" + ME)
        assert read_lines(sock, 2) == [b"Frequest too long", answer_me.rstrip(b"\n")]
        assert ask(server.path, HELLO + b"X" * 3000 + b"\n" + ME) == b""  # not a request: closed
        assert any("longer than 1000 bytes" in line for line in server.logged)


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"Lshared/passdb/a\x01x\t\n", b"Fmalformed request\n"),  # a bad escape in a lookup
        (b"I0\t0\n", b"Fmalformed request\n"),
        (b"Bwhatever\n" + ME, b""),  # not a request at all: closed, nothing after it answered
        (b"H4\t0\t0\t\tx\n" + ME, b""),  # another protocol version: closed
        (b"\n" + ME, b""),
    ],
)
def test_malformed_requests(root, request_bytes, expected):
    with running(root) as server:
        assert ask(server.path, HELLO + request_bytes) == expected
        assert ask(server.path, HELLO + ME).startswith(b"O")


def test_stalled_and_idle_connections_are_closed(root):
    limits = Limits(stall_timeout=1.0, idle_timeout=2.0)
    with running(root, limits) as server:
        partial = server.connect()
        partial.sendall(HELLO + b"Lshared/pass")
        idle = server.connect()
        idle.sendall(HELLO + ME)
        assert read_lines(idle, 1)[0].startswith(b"O")
        started = time.monotonic()
        assert closed_by_server(partial)
        assert 0.9 < time.monotonic() - started < 3.5
        assert closed_by_server(idle)
        assert 1.9 < time.monotonic() - started < 5
        assert any("left a request unfinished" in line for line in server.logged)


def test_connection_limit_evicts_the_longest_idle_one(root):
    with running(root, Limits(max_connections=3)) as server:
        socks = []
        for _ in range(3):
            sock = server.connect()
            sock.sendall(HELLO + ME)
            read_lines(sock, 1)
            socks.append(sock)
            time.sleep(0.05)
        newcomer = server.connect()
        newcomer.sendall(HELLO + ME)
        assert read_lines(newcomer, 1)[0].startswith(b"O")
        assert closed_by_server(socks[0])  # the oldest idle one made room
        socks[1].sendall(ME)
        assert read_lines(socks[1], 1)[0].startswith(b"O")


def test_connection_limit_with_every_connection_busy_waits(root):
    with running(root, Limits(max_connections=2)) as server:
        busy = [server.connect() for _ in range(2)]
        for sock in busy:
            sock.sendall(HELLO + b"Lshared/pass")  # requests in progress: not evictable
        time.sleep(0.3)
        waiting = server.connect()  # queued in the backlog
        waiting.sendall(HELLO + ME)
        waiting.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv(100)
        busy[0].close()
        waiting.settimeout(10)
        assert read_lines(waiting, 1)[0].startswith(b"O")


def test_a_handler_that_raises_costs_one_request(root):
    def handler(line: bytes):
        if b"boom" in line:
            raise RuntimeError("bug")
        return b"N\n"

    with running(root, handler=handler) as server:
        assert ask(server.path, b"Lboom\t\nLfine\t\n") == b"Finternal error\nN\n"


def test_an_iteration_that_raises_ends_with_a_failure(root):
    def rows():
        yield b"Oshared/userdb/a\t\n"
        raise RuntimeError("bug")

    with running(root, handler=lambda line: rows()) as server:
        assert ask(server.path, b"I0\t0\tshared/userdb/\t\n") == b"Oshared/userdb/a\t\nFuser listing failed\n"


def test_an_iteration_pausing_with_empty_chunks_lets_other_connections_in_between(root):
    """Each empty chunk ends the iteration's turn: a lookup arriving during a long walk that
    produces no row is answered after at most one stretch (here 2 ms), not after the walk."""
    walked = []

    def slow_rows():
        for _ in range(500):  # a 1 s walk over records that give no row
            time.sleep(0.002)
            walked.append(1)
            yield b""
        yield b"Oshared/userdb/last\t\n"
        yield b"\n"

    def handler(line: bytes):
        return slow_rows() if line.startswith(b"I") else b"N\n"

    with running(root, handler=handler) as server:
        lister = server.connect()
        lister.sendall(b"I0\t0\tshared/userdb/\t\n")
        other = server.connect()
        latencies = []
        while len(walked) < 400:
            started = time.monotonic()
            other.sendall(b"Lx\t\n")
            assert read_lines(other, 1) == [b"N"]
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 0.1, max(latencies)  # without pauses: ~1 s, the whole walk
        assert len(latencies) > 20
        assert read_lines(lister, 2) == [b"Oshared/userdb/last\t", b""]


# ------------------------------------------------------------------------------ the program


@pytest.fixture
def installed(root) -> Path:
    bindir = root.parent / "bin"
    install_runtime(bindir, root=str(root), libdir=root.parent / "lib", programs=("vauthd",))
    return bindir / "vauthd"


def start(launcher: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(launcher), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or {"PATH": "/usr/bin:/bin"},
    )


def wait_for_socket(path: Path, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no socket"
        time.sleep(0.02)


def test_program_creates_serves_and_removes_its_socket(installed, root):
    path = root.parent / "run" / "vauthd.sock"
    path.parent.mkdir()
    process = start(installed, "--socket", str(path), "--verbose")
    wait_for_socket(path, process)
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert ask(path, HELLO + ME).startswith(b'O{"password":')
        process.send_signal(signal.SIGHUP)
        assert ask(path, HELLO + ME).startswith(b"O")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert not path.exists()
    log = err.decode()
    assert "vauthd: serving" in log and "SIGHUP: cached tables and files dropped" in log and "vauthd: stopped" in log
    assert "passdb 'me@mydomain.org': found" in log
    assert "$1$" not in log  # never a hash in the log


def test_program_replaces_a_stale_socket_but_nothing_else(installed, root):
    path = root.parent / "vauthd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    process = start(installed, "--socket", str(path))
    try:
        deadline = time.monotonic() + 15
        while b"serving" not in (process.stderr.peek() if hasattr(process.stderr, "peek") else b""):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        assert ask(path, HELLO + ME).startswith(b"O")
        second = start(installed, "--socket", str(path))  # a live one: refused
        _, err = second.communicate(timeout=15)
        assert second.returncode == 111 and b"another server is listening" in err, err
        assert ask(path, HELLO + ME).startswith(b"O")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    regular = root.parent / "not-a-socket"
    regular.write_text("keep me\n")
    third = start(installed, "--socket", str(regular))
    _, err = third.communicate(timeout=15)
    assert third.returncode == 111 and b"is not a socket" in err and regular.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], b"no socket: give --socket PATH"),
        (["--frobnicate"], b"unknown argument"),
        (["--socket"], b"--socket needs a value"),
        (["--socket", "/x", "--socket-mode", "9"], b"is not a number"),
        (["--socket", "/x", "--socket-mode", "10600"], b"permission bits only"),
        (["--max-connections", "0", "--socket", "/x"], b"must be more than 0"),
        (["--socket-mode", "0660"], b"go with --socket"),
        (["--socket", "/x", "--socket-owner", "no-such-user-here"], b"no user"),
    ],
)
def test_program_usage_errors_exit_2_with_one_line(installed, args, message):
    process = start(installed, *args)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2, err
    assert message in err and b"Traceback" not in err


def test_socket_activation_checks_what_systemd_passed(installed, root):
    """Two sockets (Accept=yes style or a second ListenStream) are refused with exit 111."""
    a, b = socket.socketpair()
    script = 'export LISTEN_PID=$$ LISTEN_FDS=2; exec "$@" 3<&0 4<&0 0</dev/null'
    done = subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(installed)], stdin=a.fileno(), capture_output=True, timeout=15
    )
    a.close()
    b.close()
    assert done.returncode == 111 and b"vauthd serves exactly one" in done.stderr, done.stderr
    # LISTEN_PID of another process: the variables are not ours, so no socket at all
    done = subprocess.run([str(installed)], env={"LISTEN_PID": "1", "LISTEN_FDS": "1"}, capture_output=True, timeout=15)
    assert done.returncode == 2 and b"no socket" in done.stderr


@pytest.mark.skipif(not IS_ROOT, reason="chown of the socket needs root; CI runs as root")
def test_socket_owner_option(installed, root):
    path = root.parent / "vauthd.sock"
    process = start(installed, "--socket", str(path), "--socket-owner", "nobody:nogroup", "--socket-mode", "0660")
    try:
        wait_for_socket(path, process)
        time.sleep(0.2)
        info = path.lstat()
        import grp
        import pwd

        assert (info.st_uid, info.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
        assert stat.S_IMODE(info.st_mode) == 0o660
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert os.path.lexists(path) is False


def test_stop_finishes_the_request_in_progress_then_closes_everything(root):
    def slow(line: bytes):
        time.sleep(0.3)
        return b"N\n"

    with running(root, handler=slow) as server:
        idle = server.connect()
        busy = server.connect()
        busy.sendall(b"Lx\t\n")
        time.sleep(0.1)  # the handler is running
        server.server.stop()
        assert read_lines(busy, 1) == [b"N"]
        assert closed_by_server(busy, timeout=5) and closed_by_server(idle, timeout=5)


@pytest.mark.parametrize(
    ("mode", "owner", "message"),
    [
        (0o777, None, b"run is writable by group and others (mode 0777)"),
        (0o775, None, b"run is writable by group (mode 0775)"),
        (0o1777, None, b"run is writable by group and others (mode 1777)"),  # /tmp: sticky is no excuse
        (0o1733, None, b"run is writable by group and others (mode 1733)"),
        (0o755, 4242, b"run is owned by uid 4242"),
    ],
)
@pytest.mark.skipif(not IS_ROOT, reason="a directory owned by someone else needs root's chown; CI runs as root")
def test_a_socket_directory_others_could_write_to_is_refused(installed, root, mode, owner, message):
    """Whoever may create files in the directory could bind the socket's name while vauthd is
    down (and answer Dovecot's passdb: log in as anyone), or swap it between bind and chown."""
    run = root.parent / "run"
    run.mkdir()
    run.chmod(mode)
    if owner is not None:
        os.chown(run, owner, owner)
    process = start(installed, "--socket", str(run / "vauthd.sock"), "--socket-owner", "nobody:nogroup")
    _, err = process.communicate(timeout=15)
    assert process.returncode == 111 and message in err and b"Traceback" not in err, err
    assert b"every directory above it must be owned by root or vauthd's user" in err
    assert list(run.iterdir()) == []


@pytest.mark.skipif(not IS_ROOT, reason="a directory owned by someone else needs root's chown; CI runs as root")
@pytest.mark.parametrize(("mode", "owner"), [(0o1777, None), (0o775, None), (0o755, 4242)])
def test_a_socket_directory_under_a_parent_others_could_write_to_is_refused(installed, root, mode, owner):
    """A safe directory is no help inside one someone else may rename it out of."""
    parent = root.parent / "shared"
    run = parent / "vmreconcile"
    run.mkdir(parents=True)
    parent.chmod(mode)
    if owner is not None:
        os.chown(parent, owner, owner)
    process = start(installed, "--socket", str(run / "vauthd.sock"))
    _, err = process.communicate(timeout=15)
    assert process.returncode == 111 and f"{parent} is ".encode() in err and b"Traceback" not in err, err
    assert list(run.iterdir()) == []


def test_a_symlink_on_the_way_is_judged_where_it_points(root):
    """A link in a safe directory is followed, and its target's directories are judged too."""
    from vmreconcile.runtime.dovecot.vauthd import SetupError, check_socket_directory

    top = root.parent
    (top / "real" / "vmreconcile").mkdir(parents=True)
    (top / "run").symlink_to(top / "real")
    check_socket_directory(str(top / "run" / "vmreconcile"))  # accepted: every step is safe
    (top / "open").mkdir(mode=0o755)
    (top / "open").chmod(0o1777)
    (top / "open" / "vmreconcile").mkdir()
    (top / "other").symlink_to("open/vmreconcile")
    with pytest.raises(SetupError, match=r"open is writable by group and others \(mode 1777\)"):
        check_socket_directory(str(top / "other"))
    relative = os.path.relpath(top / "run" / "vmreconcile")
    check_socket_directory(relative)  # relative to the working directory, walked from /


def test_the_run_vmreconcile_layout_is_accepted(installed, root):
    """The shipped layout: /run (root's, 0755) / vmreconcile (root's, 0755) / vauthd.sock."""
    run = root.parent / "run" / "vmreconcile"
    run.mkdir(parents=True)
    run.parent.chmod(0o755)
    run.chmod(0o755)
    path = run / "vauthd.sock"
    process = start(installed, "--socket", str(path), "--socket-mode", "0660")
    try:
        wait_for_socket(path, process)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o660
        assert ask(path, HELLO + ME).startswith(b"O")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root; CI runs as root")
def test_a_socket_swapped_for_a_symlink_after_bind_gives_nothing_away(root, monkeypatch):
    """Were the socket file swapped for a symlink right after bind, neither its mode nor its
    owner would reach the symlink's target: the mode comes from the umask at bind, the owner
    from lchown (which changes the symlink itself)."""
    import grp
    import pwd

    from vmreconcile.runtime.dovecot import vauthd

    victim = root.parent / "victim"
    victim.write_text("root's file\n")
    victim.chmod(0o600)
    real_bind = socket.socket.bind

    def bind_then_swap(self, address):
        real_bind(self, address)
        os.unlink(address)
        os.symlink(victim, address)

    monkeypatch.setattr(socket.socket, "bind", bind_then_swap)
    owner = (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    path = root.parent / "vauthd.sock"
    sock = vauthd.create_socket(str(path), owner, 0o666)
    sock.close()
    info = victim.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
    assert path.is_symlink() and (path.lstat().st_uid, path.lstat().st_gid) == owner  # lchown'ed the link
