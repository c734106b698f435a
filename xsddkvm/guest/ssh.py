"""SSH into the DDK guest with paramiko: connect, run, put_tree (one tar stream), get (atomic).

paramiko is pinned >=3.4,<5: 5.x removed the SHA-1 key exchanges and the ``ssh-rsa`` signature
that a CentOS 5 DDK (OpenSSH 4.3) needs (/work/shared/reference/env-probe.md §3). paramiko 4
offers modern algorithms first and diffie-hellman-group-exchange-sha1 / group14-sha1 /
group1-sha1, ssh-rsa, aes*-cbc and hmac-sha1/md5 last, so its defaults suit old and new DDKs.
Every paramiko and socket exception is translated at this boundary (``ssh_errors``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Callable, Optional, Sequence, Union

import paramiko
from paramiko.ssh_exception import IncompatiblePeer
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from ..errors import AuthError, BuildError, GuestError
from ..secrets import Secret
from .output import LineSplitter, PromptWatch, Responder
from .ssh_errors import incompatible, is_transient, translate_error
from .transfer import SSH_ERRORS, Exclude, Progress, download, send_tree, transfer_error

__all__ = ["CommandResult", "GuestSSH", "Responder", "fingerprint", "translate_error"]

# OpenSSH < 7.2 (CentOS 5/6) knows no rsa-sha2-*, and without server-sig-algs paramiko picks
# rsa-sha2-512: disabling the SHA-2 variants makes it sign with ssh-rsa (env-probe.md §3).
LEGACY_RSA = ["rsa-sha2-512", "rsa-sha2-256"]
HOST_KEY_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
}
TAIL_LINES = 50
EOF_GRACE = 2.0
POLL_SECONDS = 0.02
ERROR_LINES = 20
CHUNK = 64 * 1024
StdinSource = Union[bytes, IO[bytes]]
Pin = tuple[str, str]  # (SHA256 fingerprint, key type)


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """A finished command; ``stdout_tail`` holds its last stdout and stderr lines, interleaved."""

    command: str
    exit_status: int
    stdout_tail: list[str]
    duration: float


def fingerprint(public_key: Union[str, bytes]) -> str:
    """OpenSSH ``SHA256:<base64, no padding>`` of a key blob or a ``ssh-rsa AAAA...`` line."""
    blob = public_key if isinstance(public_key, bytes) else _key_line(public_key)[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _key_line(line: str) -> tuple[str, bytes]:
    parts = line.split()
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except (IndexError, binascii.Error):
        raise GuestError(
            f"{line[:60]!r} is not an SSH public key line.",
            "Pass 'ssh-rsa AAAA...' or a 'SHA256:...' fingerprint.",
        ) from None


def _pin(expected: str) -> Pin:
    """A bare fingerprint pins the RSA key: that is the key the console reads from the guest."""
    if expected.startswith("SHA256:"):
        return expected.rstrip("="), "ssh-rsa"
    key_type, blob = _key_line(expected)
    return fingerprint(blob), key_type


class GuestSSH:
    """One authenticated SSH connection to a guest; make one with ``GuestSSH.connect``."""

    def __init__(self, transport: paramiko.Transport, host: str, port: int, timeout: float):
        self._transport = transport
        self._sftp: Optional[paramiko.SFTPClient] = None
        self.host, self.port, self.timeout = host, port, timeout
        self.host_key_fingerprint = fingerprint(transport.get_remote_server_key().asbytes())

    @classmethod
    def connect(
        cls,
        host: str,
        port: int = 22,
        username: str = "root",
        password: Optional[Secret] = None,
        pkey: Optional[paramiko.PKey] = None,
        expected_host_key: Optional[str] = None,
        timeout: float = 30,
        connect_retry_seconds: float = 60,
        on_wait: Optional[Callable[[float], None]] = None,
    ) -> GuestSSH:
        """Connect and log in, retrying while sshd is not up yet; a refused login is final."""
        if password is None and pkey is None:
            raise AuthError(f"No password or key to log in to {host} as {username}.")
        pin = _pin(expected_host_key) if expected_host_key else None
        disabled: dict[str, list[str]] = {}
        if pin:  # offer only the pinned key's type, or the server may present another key
            wanted = HOST_KEY_ALGORITHMS.get(pin[1], (pin[1],))
            others = (a for algos in HOST_KEY_ALGORITHMS.values() for a in algos)
            disabled["keys"] = [a for a in others if a not in wanted]
        started = time.monotonic()

        def waited(_state: object) -> None:
            if on_wait:
                on_wait(time.monotonic() - started)

        def opened(algorithms: dict[str, list[str]]) -> paramiko.Transport:
            retrying = Retrying(
                stop=stop_after_delay(connect_retry_seconds),
                wait=wait_exponential(multiplier=0.1, max=2),
                retry=retry_if_exception(is_transient),
                before_sleep=waited,
                reraise=True,
            )
            return retrying(_handshake, host, port, timeout, algorithms, pin)

        transport: Optional[paramiko.Transport] = None
        try:
            transport = opened(disabled)
            try:
                _authenticate(transport, username, password, pkey)
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException:
                if not isinstance(pkey, paramiko.RSAKey):
                    raise
                transport.close()  # retry once signing with ssh-rsa, for OpenSSH < 7.2
                transport = opened({**disabled, "pubkeys": LEGACY_RSA})
                _authenticate(transport, username, password, pkey)
        except Exception as exc:
            if transport is not None:
                transport.close()
            raise translate_error(exc, host, port, username) from exc
        return cls(transport, host, port, timeout)

    def run(
        self,
        command: str,
        on_line: Optional[Callable[[str, str], None]] = None,
        stdin: Optional[StdinSource] = None,
        timeout: Optional[float] = None,
        responders: Sequence[Responder] = (),
        check: bool = True,
        pty: bool = False,
        prompt_timeout: float = 10.0,
    ) -> CommandResult:
        """Run ``command``, streaming ``on_line(stream, line)``; nothing ever waits for input.

        stdin gets EOF after ``stdin`` (or at once) unless responders must answer prompts; an
        output ending in an unanswered prompt for ``prompt_timeout`` s stops the command.
        """
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def emit(stream: str, line: str) -> None:
            tail.append(line)
            if on_line:
                on_line(stream, line)

        def stopped(what: str, hint: str) -> BuildError:
            chan.close()
            return BuildError(what, hint, command=command, last_lines=list(tail)[-ERROR_LINES:])

        chan = self._channel()
        watch = PromptWatch(responders, chan.sendall)
        out = {name: LineSplitter(name, emit) for name in ("stdout", "stderr")}
        feeder: Optional[threading.Thread] = None
        try:
            if pty:
                chan.get_pty(term="vt100", width=200)
            chan.exec_command(command)
            if stdin is not None:
                feeder = threading.Thread(target=_feed, args=(chan, stdin, not responders))
                feeder.start()
            elif not responders:
                chan.shutdown_write()
            exited: Optional[float] = None
            while True:
                # sshd may send the exit status before the last output it still has in the
                # pipes (session.c session_close_by_pid): done at EOF, or soon after the exit
                # if a background child keeps the pipes open.
                if exited is None and chan.exit_status_ready():
                    exited = time.monotonic()
                finished = exited is not None and (
                    chan.eof_received or chan.closed or time.monotonic() - exited > EOF_GRACE
                )
                quiet = True
                for name, ready, recv in (
                    ("stdout", chan.recv_ready, chan.recv),
                    ("stderr", chan.recv_stderr_ready, chan.recv_stderr),
                ):
                    while ready():
                        watch.seen(out[name], out[name].feed(recv(CHUNK)))
                        quiet = False
                if finished:
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    raise stopped(
                        f"`{command}` did not finish within {timeout:g} s and was stopped.",
                        "Raise the timeout in the playbook, or look at the last lines for a hang.",
                    )
                prompt = watch.unanswered(prompt_timeout)
                if prompt is not None:
                    raise stopped(
                        f"`{command}` asked {prompt!r} and nothing answers it; it was stopped.",
                        "Add a responder in the playbook's build.responders, or make the "
                        "command non-interactive (--batch, -y, yes |).",
                    )
                if quiet:
                    time.sleep(POLL_SECONDS)  # paramiko has no event for "data or EOF"
            for splitter in out.values():
                splitter.flush()
            status = chan.recv_exit_status()
        except SSH_ERRORS as exc:
            raise self._dropped(command, exc) from exc
        finally:
            chan.close()
            if feeder:
                feeder.join(self.timeout)
        if status == -1 and not self._transport.is_active():
            raise self._dropped(command, None)
        if check and status != 0:
            how = "was killed by a signal" if status == -1 else f"exited with status {status}"
            raise BuildError(
                f"`{command}` {how}.",
                "Read the last lines below; fix the build and run again.",
                command=command,
                exit_status=status,
                last_lines=list(tail)[-ERROR_LINES:],
            )
        return CommandResult(command, status, list(tail), time.monotonic() - started)

    def put_tree(
        self,
        local_dir: Path,
        remote_dir: str,
        on_progress: Optional[Progress] = None,
        exclude: Optional[Exclude] = None,
    ) -> int:
        """Copy ``local_dir``'s contents into ``remote_dir`` as one tar stream; returns bytes."""
        chan = self._channel()
        return send_tree(chan, local_dir, remote_dir, self.host, self.timeout, on_progress, exclude)

    def get(
        self, remote_path: str, local_path: Path, on_progress: Optional[Progress] = None
    ) -> tuple[int, str, str]:
        """Download atomically; returns (size, md5 hex, sha256 hex)."""
        return download(self._sftp_client(), remote_path, local_path, self.host, on_progress)

    def listdir(self, remote_dir: str) -> list[str]:
        try:
            return sorted(self._sftp_client().listdir(remote_dir))
        except SSH_ERRORS as exc:
            raise transfer_error(f"Listing {remote_dir}", self.host, exc) from exc

    def read_text(self, remote_path: str) -> str:
        try:
            with self._sftp_client().open(remote_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except SSH_ERRORS as exc:
            raise transfer_error(f"Reading {remote_path}", self.host, exc) from exc

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self._transport.close()

    def __enter__(self) -> GuestSSH:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _channel(self) -> paramiko.Channel:
        try:
            return self._transport.open_session(timeout=self.timeout)
        except SSH_ERRORS as exc:
            raise translate_error(exc, self.host, self.port) from exc

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                sftp = paramiko.SFTPClient.from_transport(self._transport)
            except SSH_ERRORS as exc:
                raise translate_error(exc, self.host, self.port) from exc
            if sftp is None:
                raise GuestError(f"{self.host} refused to start the SFTP subsystem.")
            sftp.get_channel().settimeout(self.timeout)  # type: ignore[union-attr]
            self._sftp = sftp  # a dead link now fails after ``timeout`` instead of hanging
        return self._sftp

    def _dropped(self, command: str, exc: Optional[BaseException]) -> GuestError:
        why = f" ({exc})" if exc else ""
        return GuestError(
            f"The SSH connection to {self.host}:{self.port} dropped while running "
            f"`{command}`{why}.",
            "Check that the DDK VM is still running (it may have run out of memory or rebooted).",
        )


def _handshake(
    host: str, port: int, timeout: float, disabled: dict[str, list[str]], pin: Optional[Pin]
) -> paramiko.Transport:
    sock = socket.create_connection((host, port), timeout=timeout)
    # Nagle plus delayed ACKs cost ~6 ms per SFTP request: up to 25x slower (env-probe.md §4).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, disabled_algorithms=disabled)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        seen = fingerprint(transport.get_remote_server_key().asbytes())
    except IncompatiblePeer as exc:
        transport.close()
        opts = transport.get_security_options()
        offered = {"kex": opts.kex, "host key": opts.key_types, "cipher": opts.ciphers}
        ours = next((v for k, v in offered.items() if k in str(exc)), opts.digests)
        raise incompatible(host, port, exc, ours) from exc
    except BaseException:
        transport.close()
        raise
    if pin and seen != pin[0]:
        transport.close()
        raise GuestError(
            f"The SSH server at {host}:{port} presented key {seen} but the DDK console reported "
            f"{pin[0]}; someone may be intercepting the connection, or the IP now belongs to "
            "another machine.",
            "Check that the IP address belongs to the DDK VM; do not continue on an untrusted "
            "network.",
        )
    return transport


def _authenticate(
    transport: paramiko.Transport,
    username: str,
    password: Optional[Secret],
    pkey: Optional[paramiko.PKey],
) -> None:
    if pkey is not None:
        try:
            transport.auth_publickey(username, pkey)
            return
        except paramiko.AuthenticationException:
            if password is None:
                raise
    assert password is not None
    transport.auth_password(username, password.reveal())  # the only place it is revealed


def _feed(chan: paramiko.Channel, data: StdinSource, close: bool) -> None:
    """Send stdin from a thread, so a command that writes before it reads cannot deadlock."""
    try:
        if isinstance(data, bytes):
            chan.sendall(data)
        else:
            while chunk := data.read(CHUNK):
                chan.sendall(chunk)
        if close:
            chan.shutdown_write()
    except SSH_ERRORS:
        pass  # the command exited before reading everything; its exit status tells
