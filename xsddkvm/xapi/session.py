"""A XenAPI session with the official SDK: TLS policy, per-call timeout, pool-master redirect.

Every failure is translated at this boundary: ``XenAPI.Failure`` through
``failures.explain_failure`` and socket/TLS/HTTP errors through ``failures.explain_transport``.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import xmlrpc.client
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from ..errors import HostAPIError, XsddkvmError
from ..secrets import Secret
from . import failures
from .tls import TlsSettings

ORIGINATOR = "xsddkvm"


class _Transport(xmlrpc.client.SafeTransport):
    """HTTP or HTTPS with a timeout on every call and our TLS policy (pin checked on connect)."""

    def __init__(self, tls: TlsSettings, timeout: float, https: bool, where: str) -> None:
        super().__init__(context=tls.context() if https else None)
        self._tls = tls
        self._timeout = timeout
        self._https = https
        self._where = where

    def make_connection(self, host: Any) -> Any:
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        conn: http.client.HTTPConnection
        if self._https:
            conn = _PinnedHTTPSConnection(
                chost,
                timeout=self._timeout,
                context=self._tls.context(),
                tls=self._tls,
                where=self._where,
            )
        else:
            conn = http.client.HTTPConnection(chost, timeout=self._timeout)
        self._connection = host, conn
        return conn


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, tls: TlsSettings, where: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._tls = tls
        self._where = where

    def connect(self) -> None:
        super().connect()
        self._tls.check_peer(self.sock, self._where)  # type: ignore[arg-type,unused-ignore]


def with_host(url: str, address: str) -> str:
    """``url`` pointing at ``address`` instead, same scheme and port (HOST_IS_SLAVE redirect)."""
    parts = urlsplit(url)
    netloc = f"{address}:{parts.port}" if parts.port else address
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class XapiSession:
    """A logged-in session. Use ``with session.doing("importing the DDK"): session.api.X.y()``."""

    def __init__(
        self,
        url: str,
        username: str,
        password: Secret,
        tls: TlsSettings,
        timeout: float = 60.0,
    ) -> None:
        self.url = url
        self.username = username
        self._password = password
        self.tls = tls
        self.timeout = timeout
        self._sdk: Optional[XenAPI.Session] = None
        self._action = threading.local()
        self.redirected_from: Optional[str] = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def host_label(self) -> str:
        return urlsplit(self.url).netloc

    def login(self) -> XapiSession:
        """Log in, following HOST_IS_SLAVE to the pool master (once)."""
        while True:
            sdk = self._new_sdk(self.url)
            try:
                with self.doing("logging in"):
                    sdk.xenapi.login_with_password(
                        self.username, self._password.reveal(), "1.1", ORIGINATOR
                    )
            except HostAPIError as exc:
                if exc.code == "HOST_IS_SLAVE" and exc.params and self.redirected_from is None:
                    self.redirected_from = self.url
                    self.url = with_host(self.url, exc.params[0])
                    continue
                raise
            self._sdk = sdk
            return self

    def _new_sdk(self, url: str) -> XenAPI.Session:
        https = url.startswith("https://")
        transport = _Transport(self.tls, self.timeout, https, url)
        return XenAPI.Session(url, transport=transport)

    def logout(self) -> None:
        """Log out; never raises (called from cleanup paths).

        Uses a fresh connection: an interrupted call can leave the old one mid-request.
        """
        sdk, self._sdk = self._sdk, None
        if sdk is None:
            return
        fresh = self._new_sdk(self.url)
        fresh._session = sdk._session
        fresh.last_login_method = sdk.last_login_method
        fresh.last_login_params = sdk.last_login_params
        with contextlib.suppress(Exception):
            fresh.xenapi.session.logout()

    def __enter__(self) -> XapiSession:
        return self.login() if self._sdk is None else self

    def __exit__(self, *exc: object) -> None:
        self.logout()

    # -- calls ------------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        """``XenAPI`` proxy (``session.api.VM.get_record(ref)``); call inside ``doing``."""
        if self._sdk is None:
            raise RuntimeError("not logged in")
        return self._sdk.xenapi

    @property
    def handle(self) -> str:
        """The current session ref (changes after the SDK's transparent re-login)."""
        if self._sdk is None:
            raise RuntimeError("not logged in")
        return str(self._sdk._session)

    @contextlib.contextmanager
    def doing(self, action: str) -> Iterator[None]:
        """Translate every foreign failure inside the block into an error naming ``action``."""
        try:
            yield
        except XsddkvmError:
            raise
        except XenAPI.Failure as exc:
            raise failures.explain_failure(
                [str(d) for d in exc.details], host=self.host_label, action=action
            ) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
            raise failures.explain_transport(exc, url=self.url, action=action) from None
        except TypeError as exc:
            # XenAPI.py bug: a reply without "Status" makes it concatenate str + list.
            if "concatenate" not in str(exc):
                raise
            raise failures.explain_transport(exc, url=self.url, action=action) from None

    def http_url(self, path: str, **query: str) -> str:
        """URL of an HTTP handler on the host we are logged in to (session never in it)."""
        from urllib.parse import urlencode

        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))
