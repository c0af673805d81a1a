"""vauthd's event loop: every Dovecot connection in one thread, none able to hold up another.

Why one thread with ``selectors`` (epoll) rather than a thread per connection: a request costs
tens of microseconds of CPU (Dovecot verifies the password itself, so there is no hash work
here) and never waits on anything but local files and the user database, so there is nothing
for a second thread to overlap; Python's GIL would serialise the work anyway. What does wait is
the network side: a client that reads slowly, stops half way through a line, or vanishes.
Non-blocking sockets turn each of those into state kept for that one connection, and the
caches (tables, options, control files) need no locks. A burst of lookups is answered in
arrival order at about 10,000 a second (bench/bench_vauthd.py); an iteration over a large
table is produced in chunks of `Limits.output_chunk` bytes as the client reads them, with
other connections served in between; an iterator that yields an empty chunk (a pause) ends its
turn early, so a long walk that produces few rows cannot hold the others up either.

Bounds (all in `Limits`): connections (at the limit the longest-idle one is closed to make
room, else new ones wait in the listen backlog), bytes of one request line, bytes of pending
output per connection (iteration rows are produced only when it has drained), and time: an
incomplete request or unread output older than ``stall_timeout`` closes that connection, an
idle one is closed after ``idle_timeout`` (longer than the ``idle_msecs`` Dovecot is told to
use, so Dovecot normally closes first and never sends into a closing connection).

The handler maps one request line to its reply: bytes (possibly empty: the handshake has
none), an iterator of reply chunks (an iteration; an empty chunk is a pause), or None to close the connection (a line
that is not a request at all). Whatever it raises costs that one request an ``F``.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from collections.abc import Callable, Iterator

from .protocol import failed

Reply = bytes | Iterator[bytes] | None
Handler = Callable[[bytes], Reply]
Log = Callable[[str], None]

_LISTEN = "listen"
_WAKE = "wake"


class Limits:
    """The bounds of one server (see the module doc); the defaults suit a mail host."""

    __slots__ = ("max_connections", "max_line", "output_chunk", "idle_timeout", "stall_timeout", "drain_timeout")

    def __init__(
        self,
        max_connections: int = 256,
        max_line: int = 16384,
        output_chunk: int = 65536,
        idle_timeout: float = 600.0,
        stall_timeout: float = 30.0,
        drain_timeout: float = 2.0,
    ) -> None:
        self.max_connections = max_connections
        self.max_line = max_line
        self.output_chunk = output_chunk
        self.idle_timeout = idle_timeout
        self.stall_timeout = stall_timeout
        self.drain_timeout = drain_timeout


class Connection:
    """One client: bytes not yet parsed, bytes not yet sent, an iteration in progress."""

    __slots__ = ("sock", "inbuf", "outbuf", "rows", "eof", "closing", "last_progress", "events", "skipping")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.rows: Iterator[bytes] | None = None
        self.eof = False  # the client sent everything it will send
        self.closing = False  # close once the pending output is out
        self.last_progress = now
        self.events = selectors.EVENT_READ
        #: the command byte of an overlong line whose rest is being thrown away, else None
        self.skipping: bytes | None = None

    @property
    def busy(self) -> bool:
        """True while a request is partly read or its answer partly sent."""
        return bool(self.inbuf or self.outbuf or self.rows is not None or self.skipping is not None)


class Server:
    """Serves ``listener`` (a listening UNIX stream socket) until `stop` is called."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Handler,
        limits: Limits | None = None,
        log: Log | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener = listener
        self.handler = handler
        self.limits = limits or Limits()
        self.log: Log = log or (lambda message: None)
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.listening = False
        self.stopping = False
        self.on_wake: Callable[[], None] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._accept_paused_until = 0.0
        listener.setblocking(False)

    # control (safe from signal handlers and other threads) --------------------------------

    @property
    def wake_fd(self) -> int:
        """An fd for ``signal.set_wakeup_fd``: a signal then ends the current wait at once."""
        return self._wake_w.fileno()

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        """Stop accepting, finish what was asked (at most ``drain_timeout``), then return."""
        self.stopping = True
        self.wake()

    # the loop ----------------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until `stop`; call it once (the server closes its own helpers, not the listener)."""
        self.selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._set_listening(True)
        drain_deadline = None
        next_sweep = self.clock() + 1.0
        try:
            while True:
                now = self.clock()
                if self.stopping:
                    if drain_deadline is None:
                        drain_deadline = now + self.limits.drain_timeout
                        self._set_listening(False)
                    for conn in list(self.connections.values()):
                        if not conn.busy:  # answered everything it asked: nothing is cut short
                            self._close(conn)
                    if not self.connections or now >= drain_deadline:
                        return
                elif not self.listening and now >= self._accept_paused_until:
                    self._set_listening(len(self.connections) < self.limits.max_connections)
                for key, mask in self.selector.select(max(0.0, min(1.0, next_sweep - now))):
                    if key.data is _WAKE:
                        self._drain_wake()
                    elif key.data is _LISTEN:
                        self._accept()
                    else:
                        ready: Connection = key.data
                        if mask & selectors.EVENT_READ:
                            self._read(ready)
                        if mask & selectors.EVENT_WRITE and ready.sock.fileno() >= 0:
                            self._advance(ready)
                now = self.clock()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 1.0
        finally:
            for conn in list(self.connections.values()):
                self._close(conn)
            self._set_listening(False)
            self.selector.unregister(self._wake_r)
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        if self.on_wake is not None:
            self.on_wake()

    def _set_listening(self, on: bool) -> None:
        if on and not self.listening and not self.stopping:
            self.selector.register(self.listener, selectors.EVENT_READ, _LISTEN)
            self.listening = True
        elif not on and self.listening:
            self.selector.unregister(self.listener)
            self.listening = False

    # connections -------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            full = len(self.connections) >= self.limits.max_connections
            if full and not self._idle():
                self._set_listening(False)  # resumed when a connection closes
                return
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log(f"cannot accept a connection: {exc.strerror}; pausing for a second")
                    self._set_listening(False)
                    self._accept_paused_until = self.clock() + 1.0
                    return
                continue  # ECONNABORTED and the like: that client is gone
            if full:  # make room: the connection that has been idle longest goes
                self._close(min(self._idle(), key=lambda conn: conn.last_progress))
            sock.setblocking(False)
            conn = Connection(sock, self.clock())
            self.connections[sock.fileno()] = conn
            self.selector.register(sock, conn.events, conn)

    def _idle(self) -> list[Connection]:
        """Connections waiting for their next request (evictable: nothing is lost)."""
        return [conn for conn in self.connections.values() if not conn.busy and not conn.eof]

    def _close(self, conn: Connection) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        self.selector.unregister(conn.sock)
        del self.connections[fd]
        conn.sock.close()
        conn.rows = None
        if not self.listening and not self.stopping and self.clock() >= self._accept_paused_until:
            self._set_listening(True)

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if data:
            conn.inbuf += data
            conn.last_progress = self.clock()
        else:
            conn.eof = True
        self._advance(conn)

    def _advance(self, conn: Connection) -> None:
        """Answer what can be answered and send what can be sent, without blocking."""
        limits = self.limits
        paused = False
        while True:
            while len(conn.outbuf) < limits.output_chunk and not paused:
                if conn.rows is not None:
                    paused = self._pump(conn)
                    continue
                if conn.closing or not self._take_request(conn):
                    break
            if not conn.outbuf:
                break
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # EPIPE, ECONNRESET: the client is gone
                self._close(conn)
                return
            del conn.outbuf[:sent]
            conn.last_progress = self.clock()
            if conn.outbuf:
                break
        done = not conn.outbuf and conn.rows is None
        if done and (conn.closing or (conn.eof and b"\n" not in conn.inbuf)):
            self._close(conn)
            return
        events = 0
        if not conn.eof and not conn.closing and conn.rows is None and len(conn.outbuf) < limits.output_chunk:
            events |= selectors.EVENT_READ
        if conn.outbuf or conn.rows is not None:  # a paused iteration resumes when writable: at once
            events |= selectors.EVENT_WRITE
        if not events:  # nothing left to read and nothing to send: no way forward
            self._close(conn)
        elif events != conn.events:
            conn.events = events
            self.selector.modify(conn.sock, events, conn)

    def _take_request(self, conn: Connection) -> bool:
        """Handle one complete request line from ``conn.inbuf``; False when there is none.

        A line longer than ``max_line`` is not kept: its bytes are thrown away as they arrive
        (memory stays bounded) and once its end is seen it is answered like any refused
        request, the same however the client's writes were cut.
        """
        limit = self.limits.max_line
        end = conn.inbuf.find(b"\n")
        if conn.skipping is None and (end > limit or (end < 0 and len(conn.inbuf) > limit)):
            conn.skipping = bytes(conn.inbuf[:1])
        if conn.skipping is not None:
            if end < 0:
                conn.inbuf.clear()
                return False
            del conn.inbuf[: end + 1]
            command, conn.skipping = conn.skipping, None
            self.log(f"request line longer than {limit} bytes refused")
            self._queue(conn, failed("request too long") if command in (b"L", b"I") else None)
            return True
        if end < 0:
            return False
        line = bytes(conn.inbuf[:end])
        del conn.inbuf[: end + 1]
        conn.last_progress = self.clock()
        try:
            reply = self.handler(line)
        except Exception as exc:  # the handler's own guard failed: still one request only
            self.log(f"internal error on {line[:40]!r}: {type(exc).__name__}: {exc}")
            reply = failed("internal error") if line[:1] in (b"L", b"I") else None
        self._queue(conn, reply)
        return True

    @staticmethod
    def _queue(conn: Connection, reply: Reply) -> None:
        if reply is None:
            conn.closing = True
        elif isinstance(reply, bytes | bytearray):
            conn.outbuf += reply
        else:
            conn.rows = reply

    def _pump(self, conn: Connection) -> bool:
        """Move iteration rows into the output until it holds a chunk, the rows end, or the
        iterator yields an empty chunk; True for that last case (a pause).

        A pause ends this connection's turn: the loop serves every other ready connection
        before it comes back (the socket is watched for writability, so at once), however
        long the iteration has to walk before its next row.
        """
        rows = conn.rows
        assert rows is not None
        try:
            while len(conn.outbuf) < self.limits.output_chunk:
                chunk = next(rows)
                if not chunk:
                    conn.last_progress = self.clock()  # working, not stalled by the client
                    return True
                conn.outbuf += chunk
        except StopIteration:
            conn.rows = None
        except Exception as exc:
            self.log(f"iteration failed: {type(exc).__name__}: {exc}")
            conn.outbuf += failed("user listing failed")
            conn.rows = None
        return False

    def _sweep(self, now: float) -> None:
        """Close connections that stalled mid-request or sat idle too long."""
        limits = self.limits
        for conn in list(self.connections.values()):
            quiet = now - conn.last_progress
            if conn.busy and quiet > limits.stall_timeout:
                what = "stopped reading its answer" if conn.outbuf or conn.rows else "left a request unfinished"
                self.log(f"closing a connection that {what} for {quiet:.0f} s")
                self._close(conn)
            elif not conn.busy and quiet > limits.idle_timeout:
                self._close(conn)
