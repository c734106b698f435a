"""Every foreign exception at the SSH boundary becomes an xsddkvm error with a hint."""

from __future__ import annotations

import socket
from unittest import mock

import paramiko
import pytest
from paramiko.ssh_exception import IncompatiblePeer, NoValidConnectionsError

from xsddkvm.errors import AuthError, GuestError, XsddkvmError
from xsddkvm.guest.ssh import GuestSSH
from xsddkvm.guest.ssh_errors import is_transient, translate_error
from xsddkvm.secrets import Secret

FOREIGN = [
    (socket.timeout("timed out"), GuestError, "did not answer in time", True),
    (TimeoutError(), GuestError, "did not answer in time", True),
    (ConnectionRefusedError(111, "Connection refused"), GuestError, "refused the connection", True),
    (
        NoValidConnectionsError({("10.0.0.5", 22): ConnectionRefusedError()}),
        GuestError,
        "refused the connection",
        True,
    ),
    (
        paramiko.AuthenticationException("Authentication failed."),
        AuthError,
        "refused the login",
        False,
    ),
    (
        paramiko.BadAuthenticationType("Bad authentication type", ["publickey"]),
        AuthError,
        "allows publickey",
        False,
    ),
    (
        IncompatiblePeer("Incompatible ssh peer (no acceptable kex algorithm)"),
        GuestError,
        "no acceptable kex",
        False,
    ),
    (
        paramiko.SSHException("Error reading SSH protocol banner"),
        GuestError,
        "protocol banner",
        True,
    ),
    (paramiko.SSHException("No existing session"), GuestError, "No existing session", False),
    (EOFError(), GuestError, "closed the connection", True),
    (OSError(113, "No route to host"), GuestError, "No route to host", True),
]


@pytest.mark.parametrize(
    ("exc", "cls", "text", "transient"), FOREIGN, ids=lambda v: type(v).__name__
)
def test_translation(exc: BaseException, cls: type, text: str, transient: bool) -> None:
    err = translate_error(exc, "10.0.0.5", 22)
    assert type(err) is cls
    assert text in err.message and "10.0.0.5:22" in err.message
    assert err.hint
    assert is_transient(exc) is transient


def test_our_own_errors_pass_through() -> None:
    mine = GuestError("already translated")
    assert translate_error(mine, "h", 22) is mine
    assert not is_transient(mine)


def test_connect_retries_transient_failures_then_translates_the_last() -> None:
    waits: list[float] = []
    failures = [
        paramiko.SSHException("Error reading SSH protocol banner"),
        EOFError(),
        socket.timeout(),
        IncompatiblePeer("Incompatible ssh peer (no acceptable host key)"),
    ]
    with mock.patch("xsddkvm.guest.ssh._handshake", side_effect=failures) as handshake:
        with pytest.raises(GuestError, match="no acceptable host key") as info:
            GuestSSH.connect("10.0.0.5", password=Secret("pw-" + "z" * 9), on_wait=waits.append)
    assert handshake.call_count == 4 and len(waits) == 3
    assert "paramiko must be" in (info.value.hint or "")


def test_connect_gives_up_after_the_retry_window() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    with mock.patch("xsddkvm.guest.ssh.socket.create_connection", side_effect=refused) as conn:
        with pytest.raises(GuestError, match="refused the connection"):
            GuestSSH.connect("10.0.0.5", password=Secret("x" * 12), connect_retry_seconds=0.3)
    assert conn.call_count > 1


def test_password_never_reaches_an_error_message() -> None:
    password = Secret("s3cret-" + "k" * 10)
    failure = paramiko.AuthenticationException(f"server said {password.reveal()}")
    err = translate_error(failure, "h", 22)
    assert isinstance(err, XsddkvmError) and password.reveal() not in err.paragraph()


def test_no_credentials_is_an_auth_error() -> None:
    with pytest.raises(AuthError, match="No password or key"):
        GuestSSH.connect("10.0.0.5")
