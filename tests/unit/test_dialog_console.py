"""open_console (CONNECT /console over TLS) against an in-test console server, then a dialog."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xsddkvm.errors import AuthError, ConsoleError, HostUnreachableError, TLSError, XsddkvmError
from xsddkvm.guest.dialog import login_dialog, run_dialog
from xsddkvm.secrets import Secret
from xsddkvm.xapi.console import open_console
from xsddkvm.xapi.tls import TlsSettings, fingerprint_of

SESSION = "OpaqueRef:6f1c2f9e-0000-4000-8000-000000000001"
PASSWORD = Secret("c0nsole-" + "pw" * 6)
OK_HEAD = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xs-host")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("cert")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pin = fingerprint_of(certificate.public_bytes(serialization.Encoding.DER))
    return folder / "cert.pem", folder / "key.pem", pin


class ConsoleServer:
    """One-connection xapi console handler: answers CONNECT, then plays a login prompt."""

    def __init__(self, cert: tuple[Path, Path, str], status: bytes = b"200") -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.status, self.request, self.typed = status, b"", b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()  # the client refused our certificate
            return
        with tls:
            while b"\r\n\r\n" not in self.request:
                data = tls.recv(1024)
                if not data:
                    return  # the client gave up (a wrong pin)
                self.request += data
            if self.status != b"200":
                tls.sendall(b"HTTP/1.1 " + self.status + b" Nope\r\n\r\n")
                return
            # The first screen bytes travel with the headers, as a proxy may send them.
            tls.sendall(OK_HEAD + b"\r\nddk login: ")
            replies = [b"root\r\nPassword: ", b"\r\n[root@ddk ~]# "]
            while replies:
                data = tls.recv(1024)
                if not data:
                    return
                self.typed += data
                if data.endswith(b"\r"):
                    tls.sendall(replies.pop(0))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def server(cert: tuple[Path, Path, str], request: pytest.FixtureRequest) -> Iterator[ConsoleServer]:
    srv = ConsoleServer(cert, getattr(request, "param", b"200"))
    yield srv
    srv.close()


def test_connect_with_pin_then_log_in(server: ConsoleServer, cert: tuple[Path, Path, str]) -> None:
    console = open_console(
        "https://127.0.0.1/console?uuid=0c6b0f4e",  # no port: the API's port is used
        SESSION,
        f"https://127.0.0.1:{server.port}/",
        TlsSettings(pin_sha256=cert[2].upper()),
        timeout=5,
    )
    with console:
        run_dialog(console, login_dialog(PASSWORD, timeout=5))
    lines = server.request.decode().split("\r\n")
    assert lines[0] == "CONNECT /console?uuid=0c6b0f4e HTTP/1.0"  # no session in the URL
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert f"Cookie: session_id={SESSION}" in lines
    assert server.typed == b"root\r" + PASSWORD.reveal().encode() + b"\r"


def test_wrong_pin_is_a_tls_error(server: ConsoleServer) -> None:
    with pytest.raises(TLSError, match="not the pinned"):
        open_console(
            "https://127.0.0.1/console?uuid=x",
            SESSION,
            f"https://127.0.0.1:{server.port}",
            TlsSettings(pin_sha256="ab" * 32),
            timeout=5,
        )


def test_self_signed_without_pin_is_not_trusted(server: ConsoleServer) -> None:
    with pytest.raises(TLSError, match="not trusted"):
        open_console(
            f"https://127.0.0.1:{server.port}/console?uuid=x",
            SESSION,
            "https://127.0.0.1",
            TlsSettings(),
            timeout=5,
        )


def test_insecure_skips_checks(server: ConsoleServer) -> None:
    console = open_console(
        f"https://127.0.0.1:{server.port}/console?ref=OpaqueRef:c",
        SESSION,
        "https://127.0.0.1",
        TlsSettings(insecure=True),
        timeout=5,
    )
    with console:
        assert console.read(5).endswith(b"ddk login: ")


@pytest.mark.parametrize(
    ("server", "error", "text"),
    [
        (b"401", AuthError, "refused the session"),
        (b"404", ConsoleError, "no text console"),
        (b"500", ConsoleError, "HTTP 500"),
    ],
    indirect=["server"],
)
def test_refusals(server: ConsoleServer, error: type[XsddkvmError], text: str) -> None:
    with pytest.raises(error, match=text) as info:
        open_console(
            f"https://127.0.0.1:{server.port}/console?uuid=x",
            SESSION,
            "https://127.0.0.1",
            TlsSettings(insecure=True),
            timeout=5,
        )
    assert SESSION not in info.value.paragraph()


def test_unreachable_host() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HostUnreachableError):
        open_console(
            f"https://127.0.0.1:{port}/console?uuid=x",
            SESSION,
            "https://127.0.0.1",
            TlsSettings(),
            timeout=2,
        )
