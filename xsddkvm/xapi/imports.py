"""``PUT /import`` with requests: Content-Length up front, progress from bytes sent, the task decides."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Protocol
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import ImageError
from . import failures
from .session import XapiSession, with_host
from .tasks import destroy_task, wait_for_task
from .tls import TlsSettings, normalize_fingerprint

CHUNK = 1 << 20


class SizedStream(Protocol):
    def read(self, n: int = -1) -> bytes: ...
    def __len__(self) -> int: ...


class _PinnedAdapter(HTTPAdapter):
    """Accept only the certificate whose SHA-256 fingerprint is pinned (urllib3 checks it)."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        kwargs["cert_reqs"] = "CERT_NONE"
        kwargs["ssl_context"] = TlsSettings(insecure=True).context()  # the pin replaces the chain
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, False, cert)
        conn.assert_fingerprint = self._fingerprint


class _PolicySession(requests.Session):
    """Our TLS policy decides verification: REQUESTS_CA_BUNDLE must not override it."""

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
        settings = super().merge_environment_settings(*args, **kwargs)
        settings["verify"] = self.verify
        return settings


def http_session(xs: XapiSession) -> requests.Session:
    """A requests session with the same TLS policy as the XenAPI session."""
    http = _PolicySession()
    tls = xs.tls
    if tls.insecure:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        http.verify = False
    elif tls.pin_sha256:
        http.mount("https://", _PinnedAdapter(normalize_fingerprint(tls.pin_sha256)))
        http.verify = False
    else:
        http.verify = tls.ca_bundle or True
    return http


class UploadBody:
    """Iterable upload body of known length (so requests sends Content-Length, never chunked)."""

    def __init__(self, stream: SizedStream, on_progress: Callable[[int, int], None]) -> None:
        self._stream = stream
        self._on_progress = on_progress
        self.sent = 0

    def __len__(self) -> int:
        return len(self._stream)

    def __iter__(self) -> Iterator[bytes]:
        total = len(self._stream)
        while True:
            data = self._stream.read(CHUNK)
            if not data:
                break
            self.sent += len(data)
            self._on_progress(self.sent, total)
            yield data


def host_for_sr(xs: XapiSession, sr: str) -> str:
    """The address to upload to: the host we talk to if it sees ``sr``, else one that does.

    xapi answers an upload that reaches a host without the SR with a 302 sent before it reads
    the body (import.ml), which a streaming client may only see as a reset connection.
    """
    current = urlsplit(xs.url).hostname or ""
    with xs.doing("finding a host that can reach the SR"):
        hosts = [
            str(xs.api.PBD.get_host(pbd))
            for pbd in xs.api.SR.get_PBDs(sr)
            if xs.api.PBD.get_currently_attached(pbd)
        ]
        addresses = {host: str(xs.api.host.get_address(host)) for host in hosts}
        if not addresses or current in addresses.values():
            return current
        master = str(xs.api.pool.get_master(xs.api.pool.get_all()[0]))
    return addresses.get(master) or next(iter(addresses.values()))


def import_vm(
    xs: XapiSession,
    open_stream: Callable[[], SizedStream],
    *,
    sr: str,
    timeout: float,
    on_progress: Callable[[int, int], None],
    on_task: Optional[Callable[[str], None]] = None,
) -> str:
    """Upload an XVA stream to ``/import`` into ``sr``; return the new VM ref.

    The task is created first so the host runs the import under it; its outcome, not the
    HTTP exchange, decides success (xapi may close the socket before the tar padding is read).
    """
    action = "importing the DDK image"
    with xs.doing(action):
        task = xs.api.task.create("xsddkvm import", "DDK image upload by xsddkvm")
    if on_task is not None:
        on_task(task)
    try:
        url: Optional[str] = with_host(
            xs.http_url("/import", task_id=task, sr_id=sr), host_for_sr(xs, sr)
        )
        http = http_session(xs)
        for _hop in range(3):
            assert url is not None
            body = UploadBody(open_stream(), on_progress)
            try:
                response = http.put(
                    url,
                    data=body,
                    cookies={"session_id": xs.handle},
                    timeout=(30, timeout),
                    allow_redirects=False,
                )
            except requests.exceptions.ConnectionError as exc:
                if body.sent == 0:
                    raise failures.explain_transport(exc, url=xs.url, action=action) from None
                break  # the host closed early: its task says why (or that it is fine)
            except requests.exceptions.RequestException as exc:
                raise failures.explain_transport(exc, url=xs.url, action=action) from None
            if response.status_code in (301, 302, 303, 307, 308):
                url = response.headers.get("Location")
                continue
            if response.status_code == 401:
                raise failures.explain_failure(
                    ["SESSION_INVALID", "(import)"], host=xs.host_label, action=action
                )
            # Any other status: the handler failed the task and the task says why.
            break
        result = wait_for_task(xs, task, action=action, timeout=timeout)
    finally:
        destroy_task(xs, task)
    refs = result if isinstance(result, list) else [result]
    vms = [r for r in refs if isinstance(r, str) and r.startswith("OpaqueRef:")]
    if not vms:
        raise ImageError(
            f"The host accepted the image but reported no VM in it (result {result!r}).",
            "Check that the file is a VM export (XVA) and not a disk image.",
        )
    return vms[0]
