"""Helpers for the vauthd tests and benchmark (no tests of its own).

* the shipped examples, rendered with this world's paths: `dovecot_snippet` and `dict_settings`
  (examples/dovecot/), `SocketUnit`/`ServiceUnit` (examples/systemd/);
* `Vauthd`: vauthd started the way the shipped units start it: the socket made as
  ``vauthd.socket`` says (owner, mode) and handed over as systemd does (fd 3, ``LISTEN_FDS``,
  ``LISTEN_PID``); ``DynamicUser=yes`` + ``AmbientCapabilities=`` are reproduced with
  ``setpriv`` (an unprivileged uid holding only that capability), since the tests have no
  systemd as PID 1. Or, with ``activation=False``, the ``--socket`` way;
* `VauthdDovecot`: a private Dovecot 2.3 whose auth comes only from the rendered examples;
* `ask`: raw bytes to a dict socket and everything it answers; `AuthClient`: Dovecot's
  auth-client protocol (what the login processes speak), for ``AUTH PLAIN`` without IMAP.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from test_dovecot import HEADER, free_port, wait_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SNIPPET = EXAMPLES / "dovecot" / "vmreconcile-vauthd.conf"
DICT_SETTINGS = EXAMPLES / "dovecot" / "vmreconcile-vauthd.conf.ext"
SOCKET_UNIT = EXAMPLES / "systemd" / "vauthd.socket"
SERVICE_UNIT = EXAMPLES / "systemd" / "vauthd.service"

SHIPPED_EXT_PATH = "/etc/dovecot/vmreconcile-vauthd.conf.ext"
SHIPPED_LAUNCHER = "/usr/local/bin/vauthd"
#: Debian's dovecot-lmtpd (bin/test installs it); the LMTP tests skip without it.
HAS_LMTP = Path("/usr/lib/dovecot/lmtp").exists()
#: The unprivileged uid standing in for systemd's DynamicUser.
NOBODY = 65534


def uncomment(text: str, lines: list[str]) -> str:
    """Enable a documented alternative: its block of ``#`` lines must be in ``text`` exactly once."""
    if not lines:
        return text
    commented = "".join(f"#{line}\n" for line in lines)
    assert text.count(commented) == 1, f"{commented!r} is not in the example (once)"
    return text.replace(commented, "".join(f"{line}\n" for line in lines))


def comment_out(text: str, lines: list[str]) -> str:
    block = "".join(f"{line}\n" for line in lines)
    assert text.count(block) == 1, f"{block!r} is not in the example (once)"
    return text.replace(block, "".join(f"#{line}\n" for line in lines))


def dict_settings(socket_path: Path, ip_variant: bool = False) -> str:
    """examples/dovecot/vmreconcile-vauthd.conf.ext with the socket path substituted."""
    text = DICT_SETTINGS.read_text()
    socket_unit = SocketUnit()
    assert text.count(socket_unit.path) == 1, "the dict uri names vauthd.socket's ListenStream"
    text = text.replace(socket_unit.path, str(socket_path))
    if ip_variant:
        text = comment_out(text, ["password_key = passdb/%u", "user_key = userdb/%u"])
        text = uncomment(text, ["password_key = passdb/%u/%{lip}", "user_key = userdb/%u/%{lip}"])
    return text


def dovecot_snippet(ext_path: Path, enable: list[str] | None = None) -> str:
    """examples/dovecot/vmreconcile-vauthd.conf with the dict settings path substituted."""
    text = SNIPPET.read_text()
    args = "args = " + SHIPPED_EXT_PATH
    assert text.count(args) == 2, "the passdb and the dict userdb read the shipped .conf.ext"
    return uncomment(text.replace(args, f"args = {ext_path}"), enable or [])


QUOTA_LINES = [
    "mail_plugins = $mail_plugins quota",
    "protocol imap {",
    "  mail_plugins = $mail_plugins imap_quota",
    "}",
    "plugin {",
    "  quota = maildir:User quota",
    "  quota_grace = 0",
    "}",
]
CACHE_LINES = ["auth_cache_size = 10M", "auth_cache_ttl = 5 mins", "auth_cache_negative_ttl = 1 mins"]


def _unit_values(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


class SocketUnit:
    """What examples/systemd/vauthd.socket asks systemd for."""

    def __init__(self) -> None:
        values = _unit_values(SOCKET_UNIT)
        self.path = values["ListenStream"][0]
        self.user = values["SocketUser"][0]
        self.group = values["SocketGroup"][0]
        self.mode = int(values["SocketMode"][0], 8)
        assert values["Accept"] == ["no"]


class ServiceUnit:
    """What examples/systemd/vauthd.service runs, and as whom."""

    def __init__(self) -> None:
        values = _unit_values(SERVICE_UNIT)
        self.exec_start = values["ExecStart"][0].split()
        self.dynamic_user = values.get("DynamicUser") == ["yes"]
        self.capabilities = [c.lower().removeprefix("cap_") for c in values.get("AmbientCapabilities", [""])[0].split()]
        assert values["CapabilityBoundingSet"][0].split() == values["AmbientCapabilities"][0].split()


class Vauthd:
    """vauthd serving ``socket_path`` for ``launcher``; `stop` ends it (SIGTERM)."""

    def __init__(
        self,
        launcher: str,
        socket_path: Path,
        log: Path,
        activation: bool = True,
        extra: tuple = (),
        capabilities: list[str] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.log = log
        self.listener = None
        service = ServiceUnit()
        argv = [launcher if arg == SHIPPED_LAUNCHER else arg for arg in service.exec_start] + list(extra)
        assert argv[0] == launcher, "ExecStart runs the installed launcher"
        with open(log, "ab") as err:
            if activation:
                unit = SocketUnit()
                import grp
                import pwd

                self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.listener.bind(str(socket_path))
                os.chown(socket_path, pwd.getpwnam(unit.user).pw_uid, grp.getgrnam(unit.group).gr_gid)
                os.chmod(socket_path, unit.mode)
                self.listener.listen(128)
                if service.dynamic_user:
                    granted = service.capabilities if capabilities is None else capabilities
                    caps = "".join(f",+{c}" for c in granted)
                    argv = [
                        "setpriv",
                        f"--reuid={NOBODY}",
                        f"--regid={NOBODY}",
                        "--clear-groups",
                        f"--inh-caps=-all{caps}",
                        f"--ambient-caps=-all{caps}",
                        f"--bounding-set=-all{caps}",
                        "--no-new-privs",
                        *argv,
                    ]
                # systemd's hand-over: the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID = the pid that runs vauthd
                self.process = subprocess.Popen(
                    ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@" 3<&0 0</dev/null', "sh", *argv],
                    stdin=self.listener.fileno(),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env={"PATH": "/usr/bin:/bin", "LISTEN_FDS": "1"},
                )
            else:
                self.process = subprocess.Popen(
                    [*argv, "--socket", str(socket_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env={"PATH": "/usr/bin:/bin"},
                )
        self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while "serving" not in self.log_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"vauthd exited {self.process.returncode}: {self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vauthd did not start: {self.log_text()}")
            time.sleep(0.02)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_kib(self) -> int:
        """Resident memory of the vauthd process (the shell exec'd into it)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.listener is not None:
            self.listener.close()
        return self.process.returncode


def ask(path: Path, data: bytes, timeout: float = 20.0) -> bytes:
    """Send ``data`` to the dict socket, half-close, return every byte of the answer.

    Linux hands the client every byte vauthd sent before it reports a reset, so nothing is lost.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        chunks = []
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            pass  # vauthd closed before reading everything (a line that is no request): read what it said
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # closed with our input unread: the end of its answer too
    return b"".join(chunks)


HELLO = b"H3\t2\t0\t\tvauthd\n"


def lookup_line(key: str) -> bytes:
    return b"L" + key.encode() + b"\t\n"


class VauthdDovecot:
    """A private Dovecot whose auth is the shipped vauthd example, nothing else."""

    def __init__(
        self, world, socket_path: Path, name: str, ip_variant: bool = False, enable: list[str] | None = None
    ) -> None:
        self.tmp = world.root / f"dovecot-vauthd-{name}"
        self.tmp.mkdir()
        (self.tmp / "nodelay").write_text("127.0.0.1:::::::nodelay=yes\n")
        self.imap_port, self.pop3_port = free_port(), free_port()
        self.lmtp_port = free_port() if HAS_LMTP else 0
        ext = self.tmp / "vmreconcile-vauthd.conf.ext"
        ext.write_text(dict_settings(socket_path, ip_variant))
        header = HEADER.format(tmp=self.tmp, imap=self.imap_port, pop3=self.pop3_port)
        if HAS_LMTP:
            header = header.replace("protocols = imap pop3", "protocols = imap pop3 lmtp")
            header += f"service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {self.lmtp_port}\n  }}\n}}\n"
        if ip_variant:
            header = header.replace("listen = 127.0.0.1", "listen = 127.0.0.1 127.0.0.2")
        self.conf = self.tmp / "dovecot.conf"
        self.conf.write_text(header + dovecot_snippet(ext, enable))
        self.log = self.tmp / "dovecot.log"
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for port in (self.imap_port, self.pop3_port, self.lmtp_port):
                if port:
                    wait_port(port, self.process, self.log)
        except BaseException:
            self.stop()
            raise

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["doveadm", "-c", str(self.conf), *args], capture_output=True, text=True, timeout=60)

    @property
    def auth_client_socket(self) -> Path:
        return self.tmp / "run" / "auth-client"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class AuthClient:
    """Dovecot's auth-client protocol (version 1.2), as imap-login speaks it to the auth process."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + 10
        while True:  # Dovecot may listen on its ports a moment before the auth socket exists
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rb")
        self.sock.sendall(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
        while self.file.readline().rstrip(b"\n") != b"DONE":
            pass
        self.next_id = 1

    def auth_plain(self, user: str, password: str, service: str = "imap") -> tuple[str, list[str]]:
        """``OK``/``FAIL`` and the fields of the answer to one ``AUTH PLAIN`` with the initial response."""
        request_id = self.next_id
        self.next_id += 1
        response = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        self.sock.sendall(
            f"AUTH\t{request_id}\tPLAIN\tservice={service}\tlip=127.0.0.1\trip=127.0.0.1\tresp={response}\n".encode()
        )
        while True:
            fields = self.file.readline().rstrip(b"\n").decode().split("\t")
            if len(fields) >= 2 and fields[1] == str(request_id):
                return fields[0], fields[2:]

    def close(self) -> None:
        self.file.close()
        self.sock.close()
