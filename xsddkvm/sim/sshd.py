"""A simulated guest's SSH daemon: paramiko's server side over the guest's sandbox.

Password auth against the guest's shadow file, public keys from ``/root/.ssh/authorized_keys``,
exec (a real ``/bin/sh -c`` in the sandbox, stdio streamed both ways), SFTP rooted at the
sandbox. Like an old DDK it also offers the SHA-1 algorithms (``ssh-rsa`` host key,
diffie-hellman-group14-sha1, group-exchange-sha1); see shared/reference/env-probe.md §3.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import socket
import struct
import threading
from typing import IO, Any, Callable, Optional

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from .sandbox import Sandbox
from .sftp import SandboxSFTP

log = logging.getLogger(__name__)

_CHUNK = 65536


@functools.cache
def _load_moduli() -> bool:
    """Group-exchange kex needs primes; paramiko drops gex from a server's offer without them."""
    return bool(paramiko.Transport.load_server_moduli())


class GuestSSHServer:
    """One guest's sshd on an already bound ``listener``; ``drops`` is the ssh_drops fault."""

    def __init__(
        self, listener: socket.socket, host_key: paramiko.PKey, sandbox: Sandbox, drops: int = 0
    ) -> None:
        self.listener = listener
        self.host_key = host_key
        self.sandbox = sandbox
        self.drops = drops
        self.accepted = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._sessions: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name="guest-sshd", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return host, port

    @property
    def running(self) -> bool:
        """Whether any thread of this daemon (accept loop, connections, commands) is alive."""
        with self._lock:
            threads = [self._thread, *self._transports, *self._sessions]
        return any(thread.is_alive() for thread in threads)

    def start(self) -> None:
        _load_moduli()
        self.listener.listen(16)
        self.listener.settimeout(0.2)  # so the accept loop notices stop()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; join the threads (bounded)."""
        self._stop.set()
        self.listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            transports, sessions = list(self._transports), list(self._sessions)
        for transport in transports:
            transport.close()
        for thread in [*transports, *sessions]:
            if thread.is_alive():
                thread.join(timeout)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.dropped < self.drops:
                self.dropped += 1
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        transport = _Transport(conn)
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, SandboxSFTP, self.sandbox)
        with self._lock:
            self._transports = [t for t in self._transports if t.is_active()]
            self._transports.append(transport)
        try:
            # with an event, start_server returns at once and negotiates in its own thread
            transport.start_server(event=threading.Event(), server=_Server(self))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.debug("SSH negotiation failed: %s", exc)
            transport.close()

    def run_session(self, channel: paramiko.Channel, command: Optional[str], pty: bool) -> None:
        """Run ``command`` (None: a shell reading stdin) for one channel, in a new thread."""
        transport = channel.get_transport()
        assert isinstance(transport, _Transport)
        replied = transport.reply_waiter(channel.remote_chanid)
        thread = threading.Thread(
            target=_session, args=(self.sandbox, channel, command, pty, replied), daemon=True
        )
        with self._lock:
            self._sessions = [t for t in self._sessions if t.is_alive()]
            self._sessions.append(thread)
        thread.start()


class _Transport(paramiko.Transport):
    """Knows when a channel request's reply has gone out.

    paramiko sends the reply to an exec request only after ``check_channel_exec_request``
    returns; a command that finishes first would close its channel before the reply, and the
    client would see "Channel closed." instead of the output. Sessions wait for the reply.
    """

    _REPLIES = (99, 100)  # SSH_MSG_CHANNEL_SUCCESS, SSH_MSG_CHANNEL_FAILURE (RFC 4254)

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._replies: dict[int, int] = {}
        self._replied = threading.Condition()

    def _send_user_message(self, data: Any) -> None:  # paramiko private hook (pinned <5)
        super()._send_user_message(data)  # type: ignore[misc]
        raw = data.asbytes()
        if raw[:1] and raw[0] in self._REPLIES:
            (chanid,) = struct.unpack(">I", raw[1:5])
            with self._replied:
                self._replies[chanid] = self._replies.get(chanid, 0) + 1
                self._replied.notify_all()

    def reply_waiter(self, chanid: int) -> Callable[[], None]:
        """A function that returns once the request being handled now has been answered."""
        with self._replied:
            seen = self._replies.get(chanid, 0)

        def wait() -> None:
            with self._replied:
                self._replied.wait_for(lambda: self._replies.get(chanid, 0) > seen, timeout=10)

        return wait


class _Server(paramiko.ServerInterface):
    def __init__(self, daemon: GuestSSHServer) -> None:
        self.daemon = daemon
        self.ptys: set[int] = set()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_password(self, username: str, password: str) -> int:
        if self.daemon.sandbox.check_password(username, password):
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == "root" and key.asbytes() in _authorized_blobs(self.daemon.sandbox):
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel: paramiko.Channel, *args: object) -> bool:
        self.ptys.add(channel.get_id())
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode("utf-8", errors="surrogateescape")
        self.daemon.run_session(channel, text, channel.get_id() in self.ptys)
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.daemon.run_session(channel, None, channel.get_id() in self.ptys)
        return True


def _authorized_blobs(sandbox: Sandbox) -> set[bytes]:
    """Key blobs of the OpenSSH ``authorized_keys`` lines (options before the type allowed)."""
    blobs = set()
    text = sandbox.read_text("/root/.ssh/authorized_keys") or ""
    for line in text.splitlines():
        fields = line.split()
        for i, field in enumerate(fields[:-1]):
            if field.startswith(("ssh-", "ecdsa-", "sk-")):
                try:
                    blobs.add(base64.b64decode(fields[i + 1], validate=True))
                except ValueError:
                    pass
                break
    return blobs


def _session(
    sandbox: Sandbox,
    channel: paramiko.Channel,
    command: Optional[str],
    pty: bool,
    replied: Callable[[], None],
) -> None:
    try:
        proc = sandbox.spawn(command, merge_stderr=pty)
    except OSError as exc:
        replied()
        channel.sendall_stderr(f"sh: {exc}\n".encode())
        channel.send_exit_status(127)
        channel.close()
        return
    assert proc.stdin is not None and proc.stdout is not None
    feeder = threading.Thread(target=_copy_in, args=(channel, proc.stdin), daemon=True)
    feeder.start()
    pumps = [threading.Thread(target=_copy_out, args=(proc.stdout, channel.sendall))]
    if proc.stderr is not None:
        pumps.append(threading.Thread(target=_copy_out, args=(proc.stderr, channel.sendall_stderr)))
    for pump in pumps:
        pump.start()
    for pump in pumps:
        pump.join()
    status = sandbox.reap(proc)
    replied()
    try:
        channel.send_exit_status(status)
    finally:
        channel.close()  # also ends the feeder's recv()
    feeder.join(timeout=5)


def _copy_in(channel: paramiko.Channel, stdin: IO[bytes]) -> None:
    """Client -> command stdin; the client's EOF closes the pipe.

    Input the command no longer reads is discarded, as sshd does, so a client still sending
    (a tar stream to a command that failed early) gets to read the exit status.
    """
    sink: Optional[IO[bytes]] = stdin
    try:
        while True:
            data = channel.recv(_CHUNK)
            if not data:
                break
            if sink is not None:
                try:
                    sink.write(data)
                    sink.flush()
                except (BrokenPipeError, ValueError):
                    sink = None
    except OSError:
        pass  # the channel went away
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _copy_out(stream: IO[bytes], send: Callable[[bytes], object]) -> None:
    """Command output -> client; keeps draining if the client went away so the command ends."""
    sending = True
    while True:
        data = os.read(stream.fileno(), _CHUNK)
        if not data:
            break
        if sending:
            try:
                send(data)
            except (OSError, EOFError, paramiko.SSHException):
                sending = False
    stream.close()
