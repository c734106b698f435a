"""The vt100 text console of a running guest, and the ``CONNECT /console`` handler that serves it.

Wire rules from xapi ``ocaml/xapi/console.ml`` (handler, console_of_request, real_proxy') and
``ocaml/libs/http-lib/http.ml`` / ``http_svr.ml`` (status lines and headers), as summarised in
shared/reference/xenapi.md §4.2.
"""

from __future__ import annotations

import queue
import random
import socket
import threading
from http.cookies import SimpleCookie
from typing import Any, Optional, Union
from urllib.parse import parse_qs, urlsplit

from . import console_wording
from .errors import XapiError
from .terminal import Terminal

SCREEN_BYTES = 4096
_STOP = b""

# http_svr.ml response_unauthorised / response_internal_error bodies
_BODY_401 = (
    "<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry."
    "</body></html>"
)
_BODY_500 = (
    "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please "
    "wait a while and try again. If the problem persists, please contact your support "
    "representative.</body></html>"
)


class Console:
    """One running VM's console: the screen so far, the clients attached, the terminal program.

    Output is kept (last ~4 KiB) and replayed to each new client, as a real terminal would still
    show its current screen. ``noise`` (a Random) turns on the console_noise fault.
    """

    def __init__(self, noise: Optional[random.Random] = None) -> None:
        self.terminal: Optional[Terminal] = None
        self._screen = bytearray()
        self._clients: list[queue.Queue[bytes]] = []
        self._lock = threading.Lock()
        self.input_lock = threading.Lock()
        self._closed = threading.Event()
        self._noise_thread: Optional[threading.Thread] = None
        if noise is not None:
            self._noise_thread = threading.Thread(
                target=self._noise, args=(noise,), name="console-noise", daemon=True
            )
            self._noise_thread.start()

    def write(self, data: Union[bytes, str]) -> None:
        """What the guest prints: kept for replay and sent to every attached client."""
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return
        with self._lock:
            self._screen += data
            if len(self._screen) > SCREEN_BYTES:
                cut = len(self._screen) - SCREEN_BYTES
                newline = self._screen.find(b"\n", cut)
                # restart the replay at a line start so no escape sequence is cut in half
                del self._screen[: newline + 1 if 0 <= newline < cut + 512 else cut]
            for client in self._clients:
                client.put(data)

    def feed(self, data: bytes) -> None:
        """What a client typed."""
        with self.input_lock:
            if self.terminal is not None and not self._closed.is_set():
                self.terminal.feed(data)

    def screen(self) -> bytes:
        with self._lock:
            return bytes(self._screen)

    def attach(self) -> queue.Queue[bytes]:
        """A queue of output for one client, starting with the current screen."""
        client: queue.Queue[bytes] = queue.Queue()
        with self._lock:
            if self._closed.is_set():
                client.put(_STOP)
                return client
            if self._screen:
                client.put(bytes(self._screen))
            self._clients.append(client)
        return client

    def detach(self, client: queue.Queue[bytes]) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def close(self) -> None:
        """The VM stopped: every client's stream ends."""
        with self._lock:
            self._closed.set()
            for client in self._clients:
                client.put(_STOP)
            self._clients.clear()
        if self._noise_thread is not None:
            self._noise_thread.join(timeout=5)

    def _noise(self, rng: random.Random) -> None:
        uptime = 5.0
        while not self._closed.wait(rng.uniform(0.2, 1.2)):
            uptime += rng.uniform(0.5, 30.0)
            self.write(rng.choice(console_wording.NOISE).format(t=uptime))


# -- CONNECT /console -------------------------------------------------------------------------
def handle_connect(host: Any, handler: Any) -> None:
    """Serve ``CONNECT /console?uuid=|ref=`` on ``handler`` (a BaseHTTPRequestHandler)."""
    handler.close_connection = True
    query = parse_qs(urlsplit(handler.path).query)
    version = "1.0" if handler.request_version == "HTTP/1.0" else "1.1"
    # xapi_http.ml lookup_param_of_req: the cookie is looked at before the query
    cookie = SimpleCookie()
    try:
        cookie.load(handler.headers.get("Cookie", ""))
    except Exception:  # a malformed cookie header is treated as no cookie
        cookie = SimpleCookie()
    session = cookie["session_id"].value if "session_id" in cookie else _param(query, "session_id")
    try:
        if not session:
            raise XapiError("SESSION_INVALID", "")
        host.check_session(session)
    except XapiError:
        _send_error(handler, version, "401 Unauthorised", _BODY_401, realm="connect_console")
        return
    if _param(query, "uuid") is None and _param(query, "ref") is None:
        # console_of_request raises Failure, which with_context turns into a 500
        _send_error(handler, version, "500 Internal Error", _BODY_500)
        return
    vm = _vm_of_request(host, query)
    if vm is None:
        _send_headers(handler, "HTTP/1.1 404 Not Found", "Connection: close")
        return
    record = host.state.get("VM", vm)
    if record.get("power_state") != "Running":  # check_vm_is_running_here
        _send_error(handler, version, "500 Internal Error", _BODY_500)
        return
    console = host.guests.console_of(vm)
    if console is None:  # xapi: no console address -> http_404_missing
        _send_headers(handler, "HTTP/1.1 404 Not Found", "Connection: close")
        return
    # real_proxy': Http.http_200_ok () as its own write, then raw bytes both ways
    _send_headers(handler, "HTTP/1.1 200 OK", "Connection: keep-alive")
    _proxy(console, handler)


def _param(query: dict[str, list[str]], name: str) -> Optional[str]:
    values = query.get(name)
    return values[0] if values else None


def _vm_of_request(host: Any, query: dict[str, list[str]]) -> Optional[str]:
    """The VM behind a VM or console uuid/ref (a uuid is tried as a VM first, as xapi does)."""
    state = host.state
    with state.lock:
        uuid = _param(query, "uuid")
        ref = _param(query, "ref")
        if uuid is not None:
            for cls in ("VM", "console"):
                found = state.first(cls, lambda rec: rec.get("uuid") == uuid)
                if found is not None:
                    ref = found
                    break
            else:
                return None
        if ref is None:
            return None
        if state.exists("VM", ref):
            return ref
        if state.exists("console", ref):
            vm = state.get("console", ref).get("VM")
            return vm if vm and state.exists("VM", vm) else None
        return None


def _send_headers(handler: Any, status: str, *headers: str) -> None:
    lines = [status, *headers, "Cache-Control: no-cache, no-store", "", ""]
    handler.wfile.write("\r\n".join(lines).encode())
    handler.wfile.flush()


def _send_error(handler: Any, version: str, status: str, body: str, realm: str = "") -> None:
    # http_svr.ml response_error_html: content-length, then content-type, connection, cache
    headers = [
        f"HTTP/{version} {status}",
        f"content-length: {len(body)}",
        "content-type: text/html",
        "connection: close",
        "cache-control: no-cache, no-store",
    ]
    if realm:
        headers.append(f'WWW-Authenticate: Basic realm="{realm}"')
    handler.wfile.write(("\r\n".join(headers) + "\r\n\r\n" + body).encode())
    handler.wfile.flush()


def _proxy(console: Console, handler: Any) -> None:
    """Copy console output to the client and client bytes to the console until either ends."""
    client = console.attach()
    conn = handler.connection

    def pump_output() -> None:
        try:
            while True:
                data = client.get()
                if data is _STOP or not data:
                    break
                handler.wfile.write(data)
                handler.wfile.flush()
        except OSError:
            pass
        finally:
            try:  # wake the reader below when the guest goes away
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    writer = threading.Thread(target=pump_output, name="console-out", daemon=True)
    writer.start()
    try:
        while True:
            data = handler.rfile.read1(4096)
            if not data:
                break
            console.feed(data)
    except (OSError, ValueError):
        pass
    finally:
        console.detach(client)
        client.put(_STOP)
        writer.join(timeout=10)
