"""Translate paramiko and socket exceptions into the xsddkvm error tree, with a hint each."""

from __future__ import annotations

import errno
import socket
from typing import Sequence

import paramiko
from paramiko.ssh_exception import IncompatiblePeer, NoValidConnectionsError

from ..errors import AuthError, GuestError, XsddkvmError

REACH_HINT = "Check that the DDK VM is running, has this IP address and that sshd is started."
ALGORITHM_HINT = (
    "paramiko must be >=3.4,<5 (5.x dropped the SHA-1 algorithms old DDKs need); "
    "otherwise check the guest's sshd_config KexAlgorithms, Ciphers and MACs."
)
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH}


def translate_error(
    exc: BaseException, host: str, port: int, username: str = "root"
) -> XsddkvmError:
    """The xsddkvm error for a paramiko or socket exception raised while talking to ``host``."""
    where = f"the SSH server at {host}:{port}"
    if isinstance(exc, XsddkvmError):
        return exc
    if isinstance(exc, paramiko.BadAuthenticationType):
        allowed = ", ".join(exc.allowed_types)
        return AuthError(
            f"{where} does not accept this kind of login (it allows {allowed}).",
            "Give the DDK's root password, or a key that the guest's authorized_keys holds.",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthError(
            f"{where} refused the login as {username}.",
            "Check the DDK root password (guest.password) or the SSH key the playbook names.",
        )
    if isinstance(exc, IncompatiblePeer):
        return incompatible(host, port, exc, ())
    if isinstance(exc, paramiko.BadHostKeyException):
        return GuestError(f"{where} presented an unexpected host key.", REACH_HINT)
    if isinstance(exc, (NoValidConnectionsError, ConnectionRefusedError)):
        return GuestError(f"{where} refused the connection.", REACH_HINT)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return GuestError(f"{where} did not answer in time.", REACH_HINT)
    if isinstance(exc, EOFError):
        return GuestError(f"{where} closed the connection.", REACH_HINT)
    if isinstance(exc, paramiko.SSHException):
        return GuestError(f"The SSH session with {where} failed: {exc}.", REACH_HINT)
    if isinstance(exc, OSError):
        return GuestError(f"Cannot reach {where}: {exc.strerror or exc}.", REACH_HINT)
    return GuestError(f"Talking to {where} failed: {type(exc).__name__}: {exc}.", REACH_HINT)


def incompatible(host: str, port: int, exc: BaseException, offered: Sequence[str]) -> GuestError:
    """No common algorithm: name the category paramiko reports and what we offered in it."""
    ours = f"; xsddkvm offered {', '.join(offered)}" if offered else ""
    return GuestError(
        f"The SSH server at {host}:{port} accepts none of the algorithms xsddkvm offers "
        f"({exc}{ours}).",
        ALGORITHM_HINT,
    )


def is_transient(exc: BaseException) -> bool:
    """Worth retrying while the guest boots: refused, timed out, or sshd closing early."""
    if isinstance(exc, (paramiko.AuthenticationException, IncompatiblePeer, XsddkvmError)):
        return False
    if isinstance(exc, (socket.timeout, TimeoutError, EOFError, NoValidConnectionsError)):
        return True
    if isinstance(exc, paramiko.SSHException):
        return any(w in str(exc).lower() for w in ("banner", "eof", "reset", "closed"))
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS
