"""Fixtures for interop tests against a real OpenSSH sshd (both algorithm profiles)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.sshd import RealSshd, keygen, skip_reason
from xsddkvm.guest.ssh import GuestSSH


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RSA client key pair (RSA: the only key type a CentOS 5 DDK accepts)."""
    return keygen(tmp_path_factory.mktemp("client") / "id_rsa")


@pytest.fixture(scope="session")
def client_key(key_files: Path) -> paramiko.RSAKey:
    return paramiko.RSAKey.from_private_key_file(str(key_files))


@pytest.fixture(scope="session", params=["modern", "legacy"])
def sshd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, key_files: Path
) -> Iterator[RealSshd]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    server = RealSshd(request.param, tmp_path_factory.mktemp(f"sshd-{request.param}"))
    server.authorize(key_files.with_suffix(".pub").read_text())
    with server:
        yield server


@pytest.fixture
def guest(sshd: RealSshd, client_key: paramiko.RSAKey) -> Iterator[GuestSSH]:
    with GuestSSH.connect(sshd.host, sshd.port, pkey=client_key, timeout=10) as conn:
        yield conn
