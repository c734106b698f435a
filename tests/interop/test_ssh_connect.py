"""GuestSSH.connect against a real sshd: host key pins, bad credentials, waiting for sshd."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from tests.sshd import RealSshd, free_port, keygen, skip_reason
from xsddkvm.errors import AuthError, GuestError
from xsddkvm.guest.ssh import GuestSSH, fingerprint
from xsddkvm.secrets import Secret


def test_records_the_host_key_when_not_pinned(sshd: RealSshd, client_key: paramiko.RSAKey) -> None:
    with GuestSSH.connect(sshd.host, sshd.port, pkey=client_key) as conn:
        if sshd.profile == "legacy":
            assert conn.host_key_fingerprint == fingerprint(sshd.host_key_line)
        assert conn.host_key_fingerprint.startswith("SHA256:")
        assert conn.run("echo ok").stdout_tail == ["ok"]


@pytest.mark.parametrize("form", ["key line", "fingerprint"])
def test_pinned_host_key_matches(sshd: RealSshd, client_key: paramiko.RSAKey, form: str) -> None:
    pin = sshd.host_key_line if form == "key line" else fingerprint(sshd.host_key_line)
    with GuestSSH.connect(sshd.host, sshd.port, pkey=client_key, expected_host_key=pin) as conn:
        assert conn.host_key_fingerprint == fingerprint(sshd.host_key_line)


def test_wrong_host_key_is_refused(
    sshd: RealSshd, client_key: paramiko.RSAKey, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other").with_suffix(".pub").read_text()
    with pytest.raises(GuestError) as info:
        GuestSSH.connect(sshd.host, sshd.port, pkey=client_key, expected_host_key=other)
    assert f"presented key {fingerprint(sshd.host_key_line)}" in info.value.message
    assert f"reported {fingerprint(other)}" in info.value.message
    assert "intercepting" in info.value.message and info.value.hint


def test_wrong_key_is_an_auth_error_without_retries(sshd: RealSshd, tmp_path: Path) -> None:
    stranger = paramiko.RSAKey.from_private_key_file(str(keygen(tmp_path / "stranger")))
    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        GuestSSH.connect(sshd.host, sshd.port, pkey=stranger, connect_retry_seconds=30)
    assert time.monotonic() - started < 10
    assert "refused the login as root" in info.value.message and info.value.hint


def test_wrong_password_never_appears_in_the_error(sshd: RealSshd) -> None:
    password = Secret("Wr0ng-" + "pAss" * 4)
    with pytest.raises(AuthError) as info:
        GuestSSH.connect(sshd.host, sshd.port, password=password, connect_retry_seconds=30)
    assert password.reveal() not in info.value.paragraph()
    assert password.reveal() not in sshd.log_path.read_text()


def test_connect_retries_until_sshd_starts(tmp_path: Path, key_files: Path) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    server = RealSshd("legacy", tmp_path, port=free_port())
    server.authorize(key_files.with_suffix(".pub").read_text())
    key = paramiko.RSAKey.from_private_key_file(str(key_files))
    waits: list[float] = []
    refused = threading.Event()

    def on_wait(elapsed: float) -> None:
        waits.append(elapsed)
        refused.set()

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            GuestSSH.connect,
            server.host,
            server.port,
            pkey=key,
            on_wait=on_wait,
            connect_retry_seconds=20,
        )
        try:
            assert refused.wait(10), "connect never reported waiting"
            server.start()
            with future.result(timeout=30) as conn:
                assert conn.run("echo up").stdout_tail == ["up"]
        finally:
            server.stop()
    assert waits and waits == sorted(waits)


def test_refused_port_gives_up_with_a_guest_error() -> None:
    with pytest.raises(GuestError, match="refused the connection") as info:
        GuestSSH.connect(
            "127.0.0.1", free_port(), password=Secret("unused-pass-1"), connect_retry_seconds=0.3
        )
    assert "sshd" in (info.value.hint or "")


def test_no_common_algorithm_names_them(tmp_path: Path, key_files: Path) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    only_pq = "KexAlgorithms sntrup761x25519-sha512@openssh.com\n"  # paramiko has no sntrup
    with RealSshd("modern", tmp_path, extra_config=only_pq) as server:
        key = paramiko.RSAKey.from_private_key_file(str(key_files))
        with pytest.raises(GuestError) as info:
            GuestSSH.connect(server.host, server.port, pkey=key, connect_retry_seconds=5)
    assert "no acceptable kex algorithm" in info.value.message
    assert "diffie-hellman-group14-sha1" in info.value.message  # what we offered
    assert "paramiko must be >=3.4,<5" in (info.value.hint or "")
