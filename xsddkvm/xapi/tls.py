"""TLS policy shared by every connection to a host: XML-RPC, /import and /console.

Verified against the system CA store (or ``ca_bundle``) by default; a self-signed host is
trusted only through a pinned SHA-256 fingerprint; ``insecure`` skips checks and warns.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import socket
import ssl
from typing import Optional
from urllib.parse import urlsplit

from ..errors import HostUnreachableError, TLSError


def normalize_fingerprint(text: str) -> str:
    """``AB:cd:...``, ``abcd...`` or ``SHA256:ab:cd`` -> lowercase hex pairs joined by ':'."""
    raw = text.strip().lower()
    if raw.startswith("sha256:"):
        raw = raw[len("sha256:") :]
    hexdigits = raw.replace(":", "").replace(" ", "")
    if len(hexdigits) != 64 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise TLSError(
            f"{text!r} is not a SHA-256 certificate fingerprint (64 hex digits).",
            "Copy it from `xsddkvm host fingerprint URL`.",
        )
    return ":".join(hexdigits[i : i + 2] for i in range(0, 64, 2))


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """How to trust a host's certificate."""

    pin_sha256: Optional[str] = None
    ca_bundle: Optional[str] = None
    insecure: bool = False

    @property
    def verify_chain(self) -> bool:
        return not self.insecure and self.pin_sha256 is None

    def context(self) -> ssl.SSLContext:
        """An SSL context: full verification, or none when a pin (checked after) or insecure."""
        return _context(self)

    def check_peer(self, sock: ssl.SSLSocket, where: str) -> None:
        """Enforce the pin on a connected TLS socket."""
        if self.pin_sha256 is None or self.insecure:
            return
        der = sock.getpeercert(binary_form=True) or b""
        seen = fingerprint_of(der)
        if not hmac.compare_digest(seen, normalize_fingerprint(self.pin_sha256)):
            raise TLSError(
                f"The certificate of {where} has fingerprint {seen}, not the pinned "
                f"{normalize_fingerprint(self.pin_sha256)}: this may not be the host you expect.",
                "If the host's certificate was renewed, check the new fingerprint with the host "
                "administrator (`xsddkvm host fingerprint URL`) and update host.tls_fingerprint.",
            )

    def wrap(self, sock: socket.socket, hostname: str, where: str) -> ssl.SSLSocket:
        try:
            tls = self.context().wrap_socket(sock, server_hostname=hostname)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise untrusted(where, exc) from None
        self.check_peer(tls, where)
        return tls


@functools.cache
def _context(tls: TlsSettings) -> ssl.SSLContext:
    # Loading the CA store costs ~0.1 s: build each policy's context once per process.
    if tls.verify_chain:
        return ssl.create_default_context(cafile=tls.ca_bundle)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the pin (or nothing) decides: no CA store
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def untrusted(where: str, exc: BaseException) -> TLSError:
    return TLSError(
        f"The certificate of {where} is not trusted ({getattr(exc, 'verify_message', exc)}).",
        f"XenServer hosts use self-signed certificates: check the fingerprint with "
        f"`xsddkvm host fingerprint {where}` and pin it in host.tls_fingerprint, "
        "or pass --insecure (not recommended).",
    )


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default


def fetch_fingerprint(url: str, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate ``url`` presents (not verified: for pinning)."""
    host, port = host_port(url)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with TlsSettings(insecure=True).context().wrap_socket(raw, server_hostname=host) as tls:
                return fingerprint_of(tls.getpeercert(binary_form=True) or b"")
    except (OSError, ssl.SSLError) as exc:
        raise HostUnreachableError(
            f"Could not read the certificate of {url}: {exc}.",
            "Check the URL and that the host is reachable on that port.",
        ) from None
