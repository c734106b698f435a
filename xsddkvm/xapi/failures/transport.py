"""Socket, HTTP and TLS failures at the XenAPI/requests boundary, explained."""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import xmlrpc.client
from typing import Mapping, Optional
from urllib.parse import urlsplit

import requests

from ...errors import HostAPIError, HostUnreachableError, TLSError, XsddkvmError
from .text import Explanation, fill, param_text, scrub

_HOST_INFO = "`xsddkvm host info {url}`"

# fmt: off
TRANSPORT: Mapping[str, Explanation] = {
    "dns": Explanation("socket.gaierror", (), HostUnreachableError,
        "the host name {hostname} in {url} could not be resolved.",
        "The name is misspelt, or this machine's DNS does not know it.",
        "Check the spelling of `host.url` or your DNS (`getent hosts {hostname}`)."),
    "refused": Explanation("ConnectionRefusedError", (), HostUnreachableError,
        "{hostname} refused the connection on port {port}.",
        "Nothing listens there: the toolstack (xapi) is down, or the port in the URL is wrong.",
        "Check the port in `host.url`; on the host, `xe-toolstack-restart` restarts the toolstack. "
        f"Then try {_HOST_INFO}."),
    "timeout": Explanation("TimeoutError, socket.timeout, requests Timeout", (),
        HostUnreachableError, "{url} did not answer in time.",
        "The host is down or overloaded, or a firewall drops the traffic.",
        f"Check that the host is up and port {{port}} is open from here, then try {_HOST_INFO}."),
    "unreachable": Explanation("OSError, requests ConnectionError", (), HostUnreachableError,
        "{url} could not be reached ({detail}).",
        "The host is off, or a network or VPN between here and the host is down.",
        "Check the address in `host.url` and your network (`ping {hostname}`)."),
    "tls-untrusted": Explanation("ssl.SSLCertVerificationError", (), TLSError,
        "the certificate of {url} is not signed by a CA this machine trusts ({detail}).",
        "XenServer hosts use a self-signed certificate unless an administrator installed one.",
        "Check the fingerprint with `xsddkvm host fingerprint {url}` and pin it in "
        "`host.tls_fingerprint`, or pass `--insecure` (not recommended)."),
    "tls": Explanation("ssl.SSLError, requests SSLError", (), TLSError,
        "the secure (TLS) connection to {url} failed ({detail}).",
        "The port may not speak HTTPS, or the host offers only protocols this machine refuses.",
        "Check the scheme (https://) and port in `host.url`, then try "
        "`xsddkvm host fingerprint {url}`."),
    "reset": Explanation("ConnectionResetError, BrokenPipeError", (), HostUnreachableError,
        "{url} closed the connection ({detail}).",
        "The toolstack restarted, a proxy or firewall cut the connection, or the port expects "
        "another protocol.",
        f"Check the scheme and port in `host.url`, then run the command again or {_HOST_INFO}."),
    "http-status": Explanation("xmlrpc.client.ProtocolError", (), HostUnreachableError,
        "{url} answered HTTP {status} {reason} instead of a XenAPI reply.",
        "Is this a XenServer host? A web server or proxy answered, or the URL has a wrong path.",
        "Set `host.url` to the host itself, for example https://xs1.example.com with no path."),
    "bad-http": Explanation("http.client.HTTPException", (), HostUnreachableError,
        "{url} did not answer with valid HTTP ({detail}).",
        "Something other than a XenServer host listens on that port.",
        f"Check the address and port in `host.url`, then try {_HOST_INFO}."),
    "not-xenapi": Explanation("TypeError: can only concatenate str (XenAPI.py)", (),
        HostUnreachableError, "{url} answered, but it is not a XenAPI endpoint.",
        "Another web or XML-RPC service listens there.",
        f"Set `host.url` to the XenServer host's address and check it with {_HOST_INFO}."),
    "fault": Explanation("xmlrpc.client.Fault", (), HostAPIError,
        "{url} returned XML-RPC fault {status}: {detail}.",
        "The XenAPI library gives up when the host rejects three fresh logins in a row.",
        f"Run the command again; if it repeats, check the host with {_HOST_INFO}."),
    "other": Explanation("any other exception", (), HostUnreachableError,
        "talking to {url} failed with {type}: {detail}.",
        "xsddkvm did not expect this failure.",
        "Run `xsddkvm doctor PLAYBOOK`, and report this message if it happens again."),
}
# fmt: on

_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def explain_transport(exc: BaseException, *, url: str, action: str) -> XsddkvmError:
    """The error for a socket/HTTP/TLS failure at the XenAPI or requests boundary."""
    kind, cause = _classify_chain(exc)
    entry = TRANSPORT[kind]
    clean = scrub(url)
    try:
        parts = urlsplit(clean)
        hostname = parts.hostname or clean
        port = str(parts.port or (80 if parts.scheme == "http" else 443))
    except ValueError:
        hostname, port = clean, "443"
    values = {
        "url": clean,
        "action": scrub(action),
        "hostname": hostname,
        "port": port,
        "type": f"{type(cause).__module__}.{type(cause).__qualname__}".replace("builtins.", ""),
        "detail": param_text(_detail(cause)),
        "status": "",
        "reason": "",
    }
    if isinstance(cause, xmlrpc.client.ProtocolError):
        values.update(status=str(cause.errcode), reason=param_text(cause.errmsg))
    elif isinstance(cause, xmlrpc.client.Fault):
        values.update(status=str(cause.faultCode), detail=param_text(str(cause.faultString)))
    message = fill(f"While {{action}}, {entry.what} {entry.cause}", values)
    return entry.error(message, fill(entry.hint, values))


def _classify_chain(exc: BaseException) -> tuple[str, BaseException]:
    """The first specific failure in the exception chain, else the kind of a requests wrapper."""
    chain = _chain(exc)
    for link in chain:
        kind = _classify(link)
        if kind:
            return kind, link
    for link in chain:
        if isinstance(link, requests.exceptions.SSLError):
            return "tls", link
        if isinstance(link, requests.exceptions.Timeout):
            return "timeout", link
        if isinstance(link, requests.exceptions.ConnectionError):
            return "unreachable", link
    return "other", exc


def _chain(exc: BaseException) -> list[BaseException]:
    # requests and urllib3 wrap the socket error: requests.ConnectionError(MaxRetryError) whose
    # .reason is NewConnectionError, raised "from" the ConnectionRefusedError; walk all of it.
    seen: set[int] = set()
    out: list[BaseException] = []
    todo = [exc]
    while todo and len(out) < 16:
        link = todo.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        out.append(link)
        nested = [link.__cause__, link.__context__, getattr(link, "reason", None), *link.args]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return out


def _classify(exc: BaseException) -> Optional[str]:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls-untrusted"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return "unreachable"
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return "http-status"
    if isinstance(exc, xmlrpc.client.Fault):
        # XenAPI.py _parse_result: a reply without "Status" from a non-XAPI server.
        return "not-xenapi" if "Missing Status" in str(exc.faultString) else "fault"
    if isinstance(exc, TypeError) and "can only concatenate str" in str(exc):
        return "not-xenapi"  # XenAPI.py bug on that same path (env-probe.md section 1)
    if isinstance(exc, xmlrpc.client.ResponseError):
        return "not-xenapi"  # an HTML page where an XML-RPC reply should be
    if isinstance(exc, http.client.HTTPException):
        return "bad-http"
    return None


def _detail(exc: BaseException) -> str:
    # _ssl sets verify_message and reason on handshake errors only; others may lack them.
    for attribute in ("verify_message", "reason"):
        value = getattr(exc, attribute, None) if isinstance(exc, ssl.SSLError) else None
        if value:
            return str(value)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
