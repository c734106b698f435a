"""The client side of ``CONNECT /console``: a VM's vt100 text console as a raw byte stream.

Wire rules from xapi ``ocaml/xapi/console.ml`` (``real_proxy``) and ``ocaml/xapi/xapi_http.ml``
(``lookup_param_of_req``: the session is read from the cookie first), as summarised in
/work/shared/reference/xenapi.md §4.2: after ``HTTP/1.x 200 OK`` and its headers the
connection is an unframed bidirectional proxy of the terminal; a bad session is 401 and a VM
without a console address 404. The request is never logged: it carries the session.
"""

from __future__ import annotations

import socket
import ssl
from typing import Optional, Union
from urllib.parse import urlsplit

from ..errors import AuthError, ConsoleError, HostUnreachableError, TLSError
from .tls import TlsSettings

MAX_HEAD = 64 * 1024


class SocketConsole:
    """A ConsoleStream over the CONNECTed socket (bytes already read after the head first)."""

    def __init__(self, sock: Union[socket.socket, ssl.SSLSocket], early: bytes, where: str):
        self._sock, self._early, self.where = sock, early, where

    def read(self, timeout: float) -> bytes:
        if self._early:
            data, self._early = self._early, b""
            return data
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return b""
        except OSError as exc:
            raise EOFError(f"the console connection to {self.where} broke: {exc}") from exc
        if not data:
            raise EOFError(f"the console at {self.where} closed")
        return data

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ConsoleError(
                f"Typing into the console at {self.where} failed: {exc}.",
                "The VM may have stopped; check its power state.",
            ) from exc

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SocketConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_console(
    location: str,
    session_ref: str,
    api_url: str,
    tls: TlsSettings,
    timeout: float = 30.0,
) -> SocketConsole:
    """CONNECT to a console ``location`` (``https://host/console?uuid=…``) with a session."""
    loc, api = urlsplit(location), urlsplit(api_url)
    scheme = loc.scheme or api.scheme
    host = loc.hostname or api.hostname or ""
    # A real host serves the console on 443 like the API; the simulator on the API's own port.
    port = loc.port or api.port or (443 if scheme == "https" else 80)
    where = f"{host}:{port}"
    target = (loc.path or "/console") + (f"?{loc.query}" if loc.query else "")
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise HostUnreachableError(
            f"Cannot reach the console service at {where}: {exc}.",
            "Check that the host is reachable from here on that port.",
        ) from None
    sock: Union[socket.socket, ssl.SSLSocket] = raw
    try:
        if scheme == "https":
            sock = tls.wrap(raw, host, where)
        host_header = host if port in (80, 443) else where
        sock.sendall(
            f"CONNECT {target} HTTP/1.0\r\nHost: {host_header}\r\n"
            f"Cookie: session_id={session_ref}\r\n\r\n".encode()
        )
        status, early = _read_head(sock, where)
    except ssl.SSLError as exc:
        sock.close()
        raise TLSError(f"The TLS handshake with {where} failed: {exc}.") from None
    except BaseException:
        sock.close()
        raise
    if status != 200:
        sock.close()
        raise _refused(status, where)
    return SocketConsole(sock, early, where)


def _read_head(sock: Union[socket.socket, ssl.SSLSocket], where: str) -> tuple[int, bytes]:
    """(status code, bytes that followed the headers) of the CONNECT response."""
    head = b""
    while b"\r\n\r\n" not in head:
        try:
            data = sock.recv(4096)
        except OSError as exc:
            raise ConsoleError(f"The console service at {where} did not answer: {exc}.") from None
        if not data or len(head) > MAX_HEAD:
            raise ConsoleError(f"The console service at {where} sent no HTTP answer.")
        head += data
    head, _, early = head.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConsoleError(f"The console service at {where} answered {status_line[:80]!r}.")
    return int(parts[1]), early


def _refused(status: int, where: str) -> Exception:
    if status == 401:
        return AuthError(
            f"The host at {where} refused the session for the console (HTTP 401).",
            "The session may have expired or lack the VM operator role; log in again.",
        )
    if status == 404:
        return ConsoleError(
            f"The VM has no text console at {where} (HTTP 404).",
            "The DDK must run as a PV guest, which has a vt100 console; check VM.consoles.",
        )
    hint: Optional[str] = None
    if status == 500:
        hint = "The VM must be running on the host that serves its console."
    elif status == 503:
        hint = "Another client holds the console (pool.limit_console_sessions); close it."
    return ConsoleError(f"The host at {where} refused the console (HTTP {status}).", hint)
