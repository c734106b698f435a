"""SimServer: the simulated pool on HTTP(S), one listener per host address, all on one port.

Routes (ocaml/idl/datamodel.ml http_actions): POST ``/`` and ``/RPC2`` -> XML-RPC API;
PUT ``/import`` -> ``import_xva.handle_import``, PUT ``/import_raw_vdi`` ->
``import_raw.handle_import_raw``; CONNECT ``/console`` -> ``console.handle_connect``;
anything else 404. A self-signed RSA certificate is made at start; clients pin its SHA-256.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.util
import ipaddress
import shutil
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import wire
from .api import Api
from .errors import XapiError
from .host import SimHost
from .scenario import Scenario

# ocaml/xapi/api_server.ml callback + http_svr.ml response_fct (xenapi.md §1.1)
_RPC_HEADERS = (
    ("cache-control", "no-cache, no-store"),
    ("content-type", "text/xml"),
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "X-Requested-With"),
)


class _Listener(ThreadingHTTPServer):
    """One listening address; TLS handshakes run in the connection's own thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in two writes: without NODELAY, Nagle waits for the client's
        # delayed ACK (~40 ms) before the body, on every call.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = request
        if self.sim.tls_context is not None:
            try:
                request.settimeout(30)
                conn = self.sim.tls_context.wrap_socket(request, server_side=True)
                conn.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        with self.connections_lock:
            self.connections.add(conn)
        try:
            super().finish_request(conn, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(conn)
            conn.close()

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    server: _Listener
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """No request logging: the simulator runs inside the CLI and tests."""

    def send_response_only(self, code: int, message: Optional[str] = None) -> None:
        # http_svr.ml answers in the request's HTTP version (1.0 stays 1.0).
        if self.request_version == "HTTP/1.0":
            self.protocol_version = "HTTP/1.0"
        super().send_response_only(code, message)

    @property
    def local_address(self) -> str:
        return str(self.server.server_address[0])

    def do_POST(self) -> None:
        if urlsplit(self.path).path not in ("/", "/RPC2"):
            return self._plain(404, "Not Found")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._plain(400, "Bad Request")
        status, body = self.server.sim.rpc(self.rfile.read(length), self.local_address)
        self.send_response_only(status)
        self.send_header("content-length", str(len(body)))
        if status != 200:
            self.close_connection = True
            self.send_header("connection", "close")
            self.send_header("content-type", "text/html")
        else:
            self.send_header("connection", "close" if self.close_connection else "keep-alive")
            for name, value in _RPC_HEADERS:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        path = urlsplit(self.path).path
        if path == "/import_raw_vdi":
            return self._delegate("import_raw", "handle_import_raw")
        if path != "/import":
            return self._plain(404, "Not Found")
        self._delegate("import_xva", "handle_import")

    def do_CONNECT(self) -> None:
        if urlsplit(self.path).path != "/console":
            return self._plain(404, "Not Found")
        self._delegate("console", "handle_connect")

    def do_GET(self) -> None:
        self._plain(404, "Not Found")

    def _delegate(self, module: str, function: str) -> None:
        """Hand the request to ``sim/<module>.py``; it writes the whole response.

        Imported lazily: until that module exists the route answers 501 (temporary).
        """
        self.close_connection = True
        name = f"{__package__}.{module}"
        if importlib.util.find_spec(name) is None:
            return self._plain(501, "Not Implemented")
        getattr(importlib.import_module(name), function)(self.server.sim.host, self)

    def _plain(self, code: int, text: str) -> None:
        body = f"<html><body><h1>HTTP {code} {text}</h1></body></html>".encode()
        self.close_connection = True
        self.send_response_only(code)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(body)


class SimServer:
    """A simulated pool served over HTTPS (or HTTP) on loopback, one address per host."""

    def __init__(
        self,
        scenario: Scenario,
        data_dir: Optional[Path] = None,
        tls: bool = True,
        port: int = 0,
    ) -> None:
        self.scenario = scenario
        self.username = scenario.credentials.username
        self.password = scenario.credentials.password
        self.fingerprint = ""
        self.tls_context: Optional[ssl.SSLContext] = None
        self._tls = tls
        self._port = port
        self._temp = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="xsddkvm-sim-")) if data_dir is None else Path(data_dir)
        )
        self._host: Optional[SimHost] = None
        self._api: Optional[Api] = None
        self._listeners: list[_Listener] = []
        self._threads: list[threading.Thread] = []
        self._state = "new"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> SimServer:
        if self._state != "new":
            raise RuntimeError(f"SimServer cannot start: it is {self._state}")
        self._state = "running"
        addresses = [h.address for h in self.scenario.pool.hosts]
        self._bind(addresses)
        if self._tls:
            self.tls_context = self._make_tls(addresses)
        self._host = SimHost(self.scenario, self.data_dir, self.port)
        self._api = Api(self._host)
        for address, listener in zip(addresses, self._listeners):
            thread = threading.Thread(
                target=listener.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"sim-http-{address}", daemon=True,
            )  # fmt: skip
            thread.start()
            self._threads.append(thread)
        return self

    def _bind(self, addresses: list[str]) -> None:
        for _attempt in range(10):
            try:
                first = _Listener((addresses[0], self._port), self)
                self._listeners = [first]
                port = int(first.server_address[1])
                self._listeners += [_Listener((a, port), self) for a in addresses[1:]]
                return
            except OSError:
                for listener in self._listeners:
                    listener.server_close()
                self._listeners = []
                if self._port:
                    raise
        raise OSError("no port is free on every host address of the scenario")

    def _make_tls(self, addresses: list[str]) -> ssl.SSLContext:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])])
        now = datetime.datetime.now(datetime.timezone.utc)
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        sans.append(x509.DNSName("localhost"))
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).hexdigest()
        self.fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
        tls_dir = self.data_dir / "tls"
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        (tls_dir / "key.pem").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        return context

    def stop(self) -> None:
        """Stop serving, stop guests and remove the data this server created. Idempotent."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        for listener in self._listeners:
            listener.shutdown()
            listener.server_close()
            listener.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._host is not None:
            self._host.close()
        shutil.rmtree(self.data_dir / "tls", ignore_errors=True)
        if self._temp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what clients need ------------------------------------------------------------------
    @property
    def host(self) -> SimHost:
        if self._host is None:
            raise RuntimeError("SimServer is not started")
        return self._host

    @property
    def port(self) -> int:
        return int(self._listeners[0].server_address[1]) if self._listeners else 0

    @property
    def urls(self) -> list[str]:
        scheme = "https" if self._tls else "http"
        return [f"{scheme}://{h.address}:{self.port}" for h in self.scenario.pool.hosts]

    @property
    def url(self) -> str:
        return self.urls[0]

    # -- XML-RPC ----------------------------------------------------------------------------
    def rpc(self, body: bytes, local_address: str) -> tuple[int, bytes]:
        """HTTP status and body for one XML-RPC request arriving on ``local_address``."""
        assert self._api is not None
        try:
            method, params = wire.parse_request(body)
        except wire.WireError as exc:
            return 500, wire.parse_error_page(str(exc))
        try:
            if method == "system.listMethods":  # api_server.ml: a raw array, no Status
                return 200, wire.raw(self._api.list_methods())
            return 200, wire.success(self._api.dispatch(method, params, local_address))
        except XapiError as exc:
            return 200, wire.failure(exc.description)
        except Exception as exc:  # a simulator bug: report it as xapi would (exnHelper.ml)
            return 200, wire.failure(["INTERNAL_ERROR", repr(exc)])
