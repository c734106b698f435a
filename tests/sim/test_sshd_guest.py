"""The guest SSH server against real clients: paramiko (modern and legacy-only) and OpenSSH."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import paramiko
import pytest
from guest_support import PASSWORD, add_vm, new_host, wait_for

SHA1_KEX = ("diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1")
MODERN_KEX = (
    "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521", "diffie-hellman-group16-sha512",
    "diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha256",
)  # fmt: skip
MODERN_MACS = (
    "hmac-sha2-256", "hmac-sha2-512", "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
)  # fmt: skip


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    host = new_host(tmp_path_factory.mktemp("sshd"))
    vm = add_vm(host)
    host.guests.start(vm)
    ip = wait_for(lambda: host.guests.ip_of(vm), what="guest address")
    yield host, vm, ip
    host.close()


def connect(ip: str, port: int, **kwargs) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    kwargs.setdefault("password", PASSWORD)
    client.connect(ip, port, "root", timeout=10, banner_timeout=10, auth_timeout=10,
                   look_for_keys=False, allow_agent=False, **kwargs)  # fmt: skip
    return client


@pytest.fixture
def client(guest):
    host, _vm, ip = guest
    ssh = connect(ip, host.guests.ssh_port)
    yield ssh
    ssh.close()


def test_exec_separates_streams_and_returns_the_exit_status(client) -> None:
    _in, out, err = client.exec_command("echo out; echo err >&2; exit 3", timeout=10)
    assert out.read() == b"out\n"
    assert err.read() == b"err\n"
    assert out.channel.recv_exit_status() == 3


def test_exec_output_is_streamed_while_the_command_runs(client) -> None:
    _in, out, _err = client.exec_command("echo first; read line; echo $line", timeout=10)
    assert out.readline() == "first\n"
    assert not out.channel.exit_status_ready()  # still waiting for our input
    _in.write("second\n")
    _in.channel.shutdown_write()
    assert out.readline() == "second\n"
    assert out.channel.recv_exit_status() == 0


def test_a_pty_merges_stderr_into_stdout(client) -> None:
    _in, out, err = client.exec_command("echo a; echo b >&2", get_pty=True, timeout=10)
    assert sorted(out.read().split()) == [b"a", b"b"]
    assert err.read() == b""


def test_a_big_tar_stream_on_stdin_is_extracted_in_the_guest(guest, client) -> None:
    host, vm, _ip = guest
    payload = os.urandom(6 * 1024 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        info = tarfile.TarInfo("src/blob.bin")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
        script = b"#!/bin/sh\necho built\n"
        info = tarfile.TarInfo("src/build.sh")
        info.size, info.mode = len(script), 0o755
        archive.addfile(info, io.BytesIO(script))
    stdin, out, err = client.exec_command("mkdir -p push && tar -x -C push", timeout=30)
    stdin.channel.sendall(buf.getvalue())
    stdin.channel.shutdown_write()
    assert out.channel.recv_exit_status() == 0, err.read()
    home = host.guests.sandbox_of(vm) / "root"
    assert (home / "push/src/blob.bin").read_bytes() == payload
    assert os.access(home / "push/src/build.sh", os.X_OK)
    _in, out, _err = client.exec_command("push/src/build.sh", timeout=10)
    assert out.read() == b"built\n"


def test_sftp_put_get_and_friends_stay_inside_the_sandbox(guest, client, tmp_path) -> None:
    host, vm, _ip = guest
    root = host.guests.sandbox_of(vm)
    sftp = client.open_sftp()
    local = tmp_path / "local.txt"
    local.write_text("hello guest")
    sftp.put(str(local), "/root/abs.txt")
    sftp.put(str(local), "rel.txt")
    assert (root / "root/abs.txt").read_text() == "hello guest"
    assert (root / "root/rel.txt").read_text() == "hello guest"
    assert sftp.normalize(".") == "/root"
    sftp.mkdir("out")
    sftp.rename("rel.txt", "out/moved.txt")
    sftp.chmod("out/moved.txt", 0o600)
    assert sftp.stat("out/moved.txt").st_mode & 0o777 == 0o600
    assert "moved.txt" in sftp.listdir("/root/out")
    assert sftp.lstat("/etc/redhat-release").st_size > 0
    sftp.get("/root/out/moved.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "hello guest"
    with sftp.open("/root/written.bin", "wb") as remote:
        remote.write(b"x" * 100000)
    assert (root / "root/written.bin").stat().st_size == 100000
    sftp.remove("out/moved.txt")
    assert not (root / "root/out/moved.txt").exists()
    with pytest.raises(PermissionError):
        sftp.stat("/../../../../etc/passwd")
    with pytest.raises(FileNotFoundError):
        sftp.stat("/no/such/file")
    sftp.close()


def test_public_key_auth_uses_authorized_keys(guest, tmp_path) -> None:
    host, vm, ip = guest
    key = paramiko.RSAKey.generate(2048)
    ssh_dir = host.guests.sandbox_of(vm) / "root/.ssh"
    ssh_dir.mkdir(exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(
        f"# comment\nno-pty {key.get_name()} {key.get_base64()} me@laptop\n"
    )
    ssh = connect(ip, host.guests.ssh_port, pkey=key, password=None)
    try:
        _in, out, _err = ssh.exec_command("echo keyed", timeout=10)
        assert out.read() == b"keyed\n"
    finally:
        ssh.close()
    with pytest.raises(paramiko.AuthenticationException):
        connect(ip, host.guests.ssh_port, pkey=paramiko.RSAKey.generate(1024), password=None)


def test_wrong_password_is_refused(guest) -> None:
    host, _vm, ip = guest
    with pytest.raises(paramiko.AuthenticationException):
        connect(ip, host.guests.ssh_port, password="not-it")


def test_the_host_key_is_the_guests_own(guest, client) -> None:
    host, vm, _ip = guest
    key_file = host.guests.sandbox_of(vm) / "etc/ssh/ssh_host_rsa_key"
    expected = paramiko.RSAKey.from_private_key_file(str(key_file))
    presented = client.get_transport().get_remote_server_key()
    assert presented.asbytes() == expected.asbytes()


@pytest.mark.parametrize("kex", SHA1_KEX)
def test_a_legacy_only_client_connects(guest, kex) -> None:
    host, _vm, ip = guest
    transport = paramiko.Transport((ip, host.guests.ssh_port), disabled_algorithms={
        "kex": [k for k in (*MODERN_KEX, *SHA1_KEX, "diffie-hellman-group1-sha1") if k != kex],
        "keys": ["rsa-sha2-512", "rsa-sha2-256"],
        "macs": list(MODERN_MACS),
    })  # fmt: skip
    try:
        transport.connect(username="root", password=PASSWORD)
        assert transport.host_key_type == "ssh-rsa"
        assert transport.preferred_kex == (kex,)  # the only one offered, so the one agreed
        channel = transport.open_session(timeout=10)
        channel.exec_command("echo legacy")
        assert channel.makefile("rb").read() == b"legacy\n"
        assert channel.recv_exit_status() == 0
    finally:
        transport.close()


def test_openssh_client_runs_a_command(guest, tmp_path) -> None:
    host, vm, ip = guest
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh_dir = host.guests.sandbox_of(vm) / "root/.ssh"
    ssh_dir.mkdir(exist_ok=True)
    with open(ssh_dir / "authorized_keys", "a") as keys:
        keys.write(key.with_suffix(".pub").read_text())
    result = subprocess.run(
        ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-i", str(key),
         "-p", str(host.guests.ssh_port), f"root@{ip}", "uname -r; exit 4"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert result.stdout == "4.19.0+1\n"


def test_ssh_drops_closes_exactly_the_first_n_connections(tmp_path: Path) -> None:
    host = new_host(tmp_path, ssh_drops=2)
    try:
        vm = add_vm(host)
        host.guests.start(vm)
        ip = wait_for(lambda: host.guests.ip_of(vm))
        for _ in range(2):
            with socket.create_connection((ip, host.guests.ssh_port), timeout=5) as sock:
                assert sock.recv(100) == b""  # closed before the SSH banner
        ssh = connect(ip, host.guests.ssh_port)
        ssh.close()
        assert host.guests.sshd_of(vm).dropped == 2
    finally:
        host.close()


def test_stop_ends_sessions_and_closes_the_port(tmp_path: Path) -> None:
    host = new_host(tmp_path)
    try:
        vm = add_vm(host)
        host.guests.start(vm)
        ip = wait_for(lambda: host.guests.ip_of(vm))
        ssh = connect(ip, host.guests.ssh_port)
        sshd = host.guests.sshd_of(vm)
        _in, out, _err = ssh.exec_command("sleep 60", timeout=20)
        before = time.monotonic()
        host.guests.stop(vm, persist=False)
        out.channel.recv_exit_status()  # returns as the channel closes
        assert time.monotonic() - before < 15
        ssh.close()
        with pytest.raises(OSError):
            socket.create_connection((ip, host.guests.ssh_port), timeout=2).close()
        assert not sshd.running
    finally:
        host.close()


def test_stdin_the_command_does_not_read_is_discarded(guest, client) -> None:
    host, vm, _ip = guest
    go = host.guests.sandbox_of(vm) / "root/go"
    # reads 10 bytes, closes its stdin, then waits for the test's signal
    command = (
        "head -c 10 >/dev/null; exec </dev/null; while [ ! -e go ]; do sleep 0.05; done; exit 5"
    )
    stdin, out, _err = client.exec_command(command, timeout=30)
    # more than the channel window: this blocks unless the server drains the unread input
    stdin.channel.sendall(b"x" * (4 * 1024 * 1024))
    stdin.channel.shutdown_write()
    go.touch()
    assert out.channel.recv_exit_status() == 5
