"""CONNECT /console end to end: a SimServer over TLS, the VM started through XenAPI."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import paramiko
import pytest
import XenAPI
from guest_support import add_vm, wait_for

OK_200 = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"


class ConsoleClient:
    """A raw CONNECT client like ``xe console``: status + headers, then bytes both ways."""

    def __init__(self, sim: Any, target: str, session: str = "", cookie: bool = True) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        host, port = sim.url.split("//")[1].rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=10)
        self.sock = context.wrap_socket(raw)
        query = f"/console?{target}"
        headers = "Host: sim\r\n"
        if session and cookie:
            headers += f"Cookie: session_id={session}\r\n"
        elif session:
            query += f"&session_id={session}"
        self.sock.sendall(f"CONNECT {query} HTTP/1.0\r\n{headers}\r\n".encode())
        self.buffer = b""
        self.head = self.read_until(b"\r\n\r\n")

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Everything up to and including ``marker`` (kept in ``buffer`` until consumed)."""
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"console closed before {marker!r}: {self.buffer[-300:]!r}")
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        text, self.buffer = self.buffer[:end], self.buffer[end:]
        return text

    def type(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def session_ref(session) -> str:
    return str(session._session)


def start_vm(sim, xapi, **kwargs) -> tuple[str, str]:
    vm = add_vm(sim.host, power_state="Halted", **kwargs)
    xapi.VM.start(vm, False, False)
    console = xapi.VM.get_consoles(vm)[0]
    return vm, xapi.console.get_uuid(console)


def test_first_boot_dialog_login_shell_and_ssh_with_the_new_password(sim, xapi, session_ref):
    vm, console_uuid = start_vm(sim, xapi, pv_args="")
    con = ConsoleClient(sim, f"uuid={console_uuid}", session_ref)
    try:
        assert con.head == OK_200
        con.read_until(b"New root password: ")
        con.type("Fresh-1\r")
        con.read_until(b"Retype new root password: ")
        con.type("Fresh-1\r")
        con.read_until(b"ddk login: ")
        con.type("root\r")
        con.read_until(b"Password: ")
        con.type("Fresh-1\n")
        con.read_until(b"[root@ddk ~]# ")
        con.type("echo sum=$((40+2))\r")
        assert b"sum=42\r\n" in con.read_until(b"[root@ddk ~]# ")
    finally:
        con.close()
    ip = wait_for(lambda: sim.host.guests.ip_of(vm))
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    ssh.connect(ip, sim.host.guests.ssh_port, "root", "Fresh-1", timeout=10,
                look_for_keys=False, allow_agent=False)  # fmt: skip
    ssh.close()


def test_reconnecting_replays_the_current_screen(sim, xapi, session_ref):
    vm, _console_uuid = start_vm(sim, xapi)
    vm_uuid = xapi.VM.get_uuid(vm)
    first = ConsoleClient(sim, f"uuid={vm_uuid}", session_ref, cookie=False)
    first.read_until(b"ddk login: ")
    first.close()
    second = ConsoleClient(sim, f"ref={vm}", session_ref)
    try:
        assert second.head == OK_200
        replay = second.read_until(b"ddk login: ")
        assert b"XenServer DDK release" in replay
    finally:
        second.close()


def test_shutdown_closes_the_console_stream(sim, xapi, session_ref):
    vm, console_uuid = start_vm(sim, xapi)
    con = ConsoleClient(sim, f"uuid={console_uuid}", session_ref)
    con.read_until(b"login: ")
    xapi.VM.hard_shutdown(vm)
    con.sock.settimeout(10)
    while con.sock.recv(4096):
        pass
    con.close()


@pytest.mark.parametrize("bad_session", ["", "OpaqueRef:nope"], ids=["missing", "invalid"])
def test_a_bad_session_gets_401(sim, xapi, bad_session):
    _vm, console_uuid = start_vm(sim, xapi)
    con = ConsoleClient(sim, f"uuid={console_uuid}", bad_session)
    body = b"<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry."
    assert con.head.split(b"\r\n")[:6] == [
        b"HTTP/1.0 401 Unauthorised", b"content-length: 96", b"content-type: text/html",
        b"connection: close", b"cache-control: no-cache, no-store",
        b'WWW-Authenticate: Basic realm="connect_console"',
    ]  # fmt: skip
    assert con.read_until(b"</html>").startswith(body)
    con.close()


def test_an_unknown_console_gets_404(sim, session_ref):
    con = ConsoleClient(sim, "uuid=00000000-0000-0000-0000-000000000000", session_ref)
    assert con.head == (
        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\r\n"
    )
    con.close()


def test_a_halted_vm_gets_500(sim, xapi, session_ref):
    vm = add_vm(sim.host, power_state="Halted")
    con = ConsoleClient(sim, f"ref={vm}", session_ref)
    assert con.head.startswith(b"HTTP/1.0 500 Internal Error\r\n")
    con.close()


def test_console_noise_never_splits_a_prompt(make_sim):
    sim = make_sim(console_noise=True)
    xs = XenAPI.Session(sim.url, ignore_ssl=True)
    xs.xenapi.login_with_password(sim.username, sim.password, "1.0", "tests")
    try:
        vm, console_uuid = start_vm(sim, xs.xenapi, pv_args="")
        con = ConsoleClient(sim, f"uuid={console_uuid}", str(xs._session))
        con.read_until(b"New root password: ")
        con.type("n0isy\r")
        con.read_until(b"Retype new root password: ")
        con.type("n0isy\r")
        con.read_until(b"ddk login: ")
        # noise keeps coming after the prompt, which itself arrived in one piece
        after = con.read_until(b"\x1b", timeout=10)
        assert after
        con.close()
    finally:
        xs.xenapi.session.logout()
