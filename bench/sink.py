"""A TLS endpoint that reads a PUT body and throws it away: what ``curl -T`` can reach when
nothing on the other side does any work, to tell the simulator's cost from the wire's."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Optional

RECV = 256 * 1024


class NullSink:
    """``https://127.0.0.1:<port>/`` answering 200 once it has drained Content-Length bytes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.received = 0
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> NullSink:
        self._thread = threading.Thread(target=self._serve, name="null-sink", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/import"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            with self._context.wrap_socket(conn, server_side=True) as tls:
                self._drain(tls)

    def _drain(self, tls: ssl.SSLSocket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = tls.recv(4096)
            if not data:
                return
            head += data
        header, _, body = head.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        left = length - len(body)
        buffer = memoryview(bytearray(RECV))
        while left > 0:
            n = tls.recv_into(buffer, min(RECV, left))
            if not n:
                break
            left -= n
        self.received = length - max(left, 0)
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
