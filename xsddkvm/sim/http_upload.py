"""What the simulator's upload handlers (``/import``, ``/import_raw_vdi``) share: parameters from
cookie or query, the 401 page, the task the upload runs under, and the request body reader.

Sources: ocaml/xapi/xapi_http.ml (lookup_param_of_req), ocaml/libs/http-lib/http_svr.ml
(response_unauthorised), ocaml/xapi/import.ml (the 200 header before any body byte).
"""

from __future__ import annotations

import http.cookies
import socket
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from .errors import XapiError

READ = 64 * 1024
NO_CACHE = b"Connection: close\r\nCache-Control: no-cache, no-store\r\n"


def unauthorised(realm: str) -> bytes:
    """http_svr.ml response_unauthorised; the realm is the handler's name."""
    return (
        b"HTTP/1.1 401 Unauthorised\r\ncontent-type: text/html\r\nconnection: close\r\n"
        b'cache-control: no-cache, no-store\r\nWWW-Authenticate: Basic realm="'
        + realm.encode()
        + b'"\r\n\r\n<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials '
        b"and retry.</body></html>"
    )


def status(code: str) -> bytes:
    return b"HTTP/1.1 " + code.encode() + b"\r\n" + NO_CACHE + b"\r\n"


def accepted_header(task: str) -> bytes:
    """import.ml: sent before reading the body (note: no space after ``task-id:``)."""
    return (
        b"HTTP/1.1 200 OK\r\n" + NO_CACHE + b"task-id:" + task.encode() + b"\r\n"
        b"content-type: application/octet-stream\r\n\r\n"
    )


def request_params(handler: Any) -> dict[str, str]:
    # xapi_http.ml lookup_param_of_req: cookies first, then the query string
    params = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
    cookie = http.cookies.SimpleCookie()
    try:
        cookie.load(handler.headers.get("Cookie", ""))
    except http.cookies.CookieError:
        pass
    params.update({k: morsel.value for k, morsel in cookie.items()})
    return params


def send(handler: Any, data: bytes) -> None:
    handler.close_connection = True
    handler.wfile.write(data)
    handler.wfile.flush()


def accept(
    host: Any, handler: Any, label: str, refusal: bytes
) -> Optional[tuple[dict[str, str], str]]:
    """The parameters and task of an authenticated upload, or None once answered otherwise
    (refused, or redirected to the master)."""
    params = request_params(handler)
    session = params.get("session_id", "")
    try:
        host.check_session(session)
    except XapiError:
        send(handler, refusal)
        return None
    if redirect_to_master(host, handler):
        return None
    task = params.get("task_id") or host.create_task(label, session_ref=session)
    if not host.state.exists("task", task):
        send(handler, status("500 Internal Server Error"))
        return None
    return params, task


def redirect_to_master(host: Any, handler: Any) -> bool:
    """Answer 302 when the upload reached a pool member that cannot see the SR.

    import.ml: a host that cannot reach the target SR redirects (Http.http_302_redirect) to one
    that can; the simulator's one SR is local to the master. xapi's Location has no port (443);
    the simulator keeps its own port in it so that clients can follow it.
    """
    master = host.address_of(host.master)
    local = getattr(handler, "local_address", master)  # a handler outside SimServer: no pool
    if local == master:
        return False
    port = handler.server.server_address[1]
    scheme = "https" if getattr(handler.server.sim, "tls_context", None) else "http"
    netloc = master if port in (80, 443) else f"{master}:{port}"
    query = urlsplit(handler.path).query
    location = f"{scheme}://{netloc}{urlsplit(handler.path).path}" + (f"?{query}" if query else "")
    send(
        handler,
        b"HTTP/1.1 302 Found\r\n" + NO_CACHE + b"Location: " + location.encode() + b"\r\n\r\n",
    )
    return True


def premature_eof() -> XapiError:
    return XapiError("IMPORT_ERROR_PREMATURE_EOF")


class RequestBody:
    """At most Content-Length bytes of the request, cut early by the upload_cut_at_bytes fault."""

    def __init__(self, handler: Any, length: int, cut_at: Optional[int]) -> None:
        self._handler = handler
        self._left = length
        self._cut_at = cut_at
        self.received = 0

    def pull(self) -> bytes:
        want = min(READ, self._left)
        if self._cut_at is not None:
            want = min(want, self._cut_at - self.received)
            if want <= 0:
                self._cut()
        if want <= 0:
            return b""
        try:
            data = self._handler.rfile.read(want)
        except OSError:
            raise premature_eof() from None
        self._left -= len(data)
        self.received += len(data)
        return data

    def _cut(self) -> None:
        """Drop the connection as a network failure would, mid-upload."""
        connection = getattr(self._handler, "connection", None)
        if connection is not None:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise premature_eof()
