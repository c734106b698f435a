"""Sessions, error layouts, pool roles, TLS and raw wire format of the simulator's XenAPI."""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import xmlrpc.client
from typing import Any, Callable

import pytest
import XenAPI

from xsddkvm.sim.server import SimServer

NOVERIFY = ssl._create_unverified_context()


def failure(call: Callable[..., Any], *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return list(info.value.details)


def post(
    sim: SimServer, body: bytes, address: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection(address, sim.port, context=NOVERIFY, timeout=10)
    try:
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_login_returns_a_session_ref(sim: SimServer, xapi: Any, session: Any) -> None:
    assert session.handle.startswith("OpaqueRef:")
    record = xapi.session.get_record(session.handle)
    assert record["originator"] == "tests"
    assert record["this_host"] == xapi.pool.get_master(xapi.pool.get_all()[0])


def test_bad_password_is_session_authentication_failed(sim: SimServer) -> None:
    xs = XenAPI.Session(sim.url, ignore_ssl=True)
    details = failure(xs.xenapi.login_with_password, "root", "wrong")
    assert details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    assert sim.host.inspect()["session"] == []


def test_call_after_logout_is_session_invalid(sim: SimServer, session: Any) -> None:
    handle = session.handle
    session.xenapi.session.logout()
    proxy = xmlrpc.client.ServerProxy(sim.url, context=NOVERIFY)
    result = getattr(proxy, "VM.get_all")(handle)
    assert result == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", handle]}


def test_expired_session_is_renewed_by_the_sdk(make_sim: Callable[..., SimServer]) -> None:
    sim = make_sim(session_expiry_calls=2)
    xs = XenAPI.Session(sim.url, ignore_ssl=True)
    xs.xenapi.login_with_password(sim.username, sim.password)
    first = xs.handle
    for _ in range(3):
        assert len(xs.xenapi.host.get_all()) == 1
    assert xs.handle != first
    assert [s["ref"] for s in sim.host.inspect()["session"]] == [xs.handle]


def test_error_layouts(xapi: Any) -> None:
    assert failure(xapi.VM.get_record, "OpaqueRef:nope") == [
        "HANDLE_INVALID",
        "VM",
        "OpaqueRef:nope",
    ]
    assert failure(xapi.SR.get_by_uuid, "no-such") == ["UUID_INVALID", "SR", "no-such"]
    assert failure(xapi.VM.frobnicate, "x") == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    assert failure(xapi.VM.get_record) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0",
    ]  # fmt: skip
    assert failure(xapi.pool.get_by_name_label, "x")[0] == "MESSAGE_METHOD_UNKNOWN"


def test_map_duplicate_key(xapi: Any) -> None:
    pool = xapi.pool.get_all()[0]
    xapi.pool.add_to_other_config(pool, "k", "v")
    details = failure(xapi.pool.add_to_other_config, pool, "k", "w")
    assert details == ["MAP_DUPLICATE_KEY", "pool", "other_config", pool, "k"]
    xapi.pool.remove_from_other_config(pool, "k")
    assert "k" not in xapi.pool.get_other_config(pool)


def test_supporter_answers_host_is_slave(make_sim: Callable[..., SimServer]) -> None:
    sim = make_sim(hosts=2)
    slave = XenAPI.Session(sim.urls[1], ignore_ssl=True)
    details = failure(slave.xenapi.login_with_password, sim.username, sim.password)
    assert details == ["HOST_IS_SLAVE", "127.0.0.1"]
    master = XenAPI.Session(sim.url, ignore_ssl=True)
    master.xenapi.login_with_password(sim.username, sim.password)
    proxy = xmlrpc.client.ServerProxy(sim.urls[1], context=NOVERIFY)
    result = getattr(proxy, "host.get_all")(master.handle)
    assert result["ErrorDescription"] == ["HOST_IS_SLAVE", "127.0.0.1"]
    assert len(master.xenapi.host.get_all()) == 2
    master.xenapi.session.logout()


def test_fingerprint_is_sha256_of_the_served_certificate(sim: SimServer) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as raw:
        with NOVERIFY.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    digest = hashlib.sha256(der).hexdigest()
    assert sim.fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_every_scalar_is_untyped_on_the_wire(sim: SimServer, session: Any) -> None:
    host = session.xenapi.host.get_all()[0]
    call = xmlrpc.client.dumps((session.handle, host), "host.get_record").encode()
    status, headers, body = post(sim, call)
    assert status == 200
    assert headers["content-type"] == "text/xml"
    assert headers["cache-control"] == "no-cache, no-store"
    text = body.decode()
    assert "<member><name>API_version_major</name><value>2</value></member>" in text
    assert "<member><name>Status</name><value>Success</value></member>" in text
    assert "<string>" not in text and "<int>" not in text and "<i4>" not in text
    assert "<member><name>enabled</name><value><boolean>1</boolean></value></member>" in text


def test_malformed_request_is_http_500(sim: SimServer) -> None:
    status, headers, body = post(sim, b"<methodCall><oops")
    assert status == 500
    assert headers["content-type"] == "text/html"
    assert b"HTTP 500 internal server error" in body


def test_list_methods_has_no_status_struct(sim: SimServer) -> None:
    proxy = xmlrpc.client.ServerProxy(sim.url, context=NOVERIFY)
    methods = list(proxy.system.listMethods())  # type: ignore[arg-type]
    assert "VM.start" in methods and "session.login_with_password" in methods
