"""XenAPI codes and transport failures become one-paragraph errors that say what to do."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http.client
import http.server
import re
import socket
import socketserver
import ssl
import subprocess
import threading
import xmlrpc.client
import xmlrpc.server
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
import urllib3
import XenAPI

from xsddkvm.config import Playbook
from xsddkvm.errors import (
    AuthError,
    HostAPIError,
    HostUnreachableError,
    ImageError,
    InstallError,
    StorageError,
    TLSError,
    XsddkvmError,
)
from xsddkvm.exit_codes import ExitCode
from xsddkvm.secrets import Secret
from xsddkvm.xapi import failures

HOST = "xs1.lab"
ACTION = "importing the DDK image"
VM = "OpaqueRef:7cdfad16-7e0e-411f-1b6c-4308fd33b164"
TASK = "OpaqueRef:06641b68-0695-5bfa-2fce-ec2c1c914097"
UPD = "OpaqueRef:2e1f4a36-5b7c-4c8e-9d1a-0f3b2c4d5e6f"

# Realistic parameters, in the wire layouts of xenapi.md 1.7 and xapi-records.md 3-4.
EXAMPLES: dict[str, list[str]] = {
    "SESSION_AUTHENTICATION_FAILED": ["root", "Authentication failure"],
    "SESSION_INVALID": ["OpaqueRef:5f1d3810-45d1-0762-81f6-18b198b52e0c"],
    "HOST_IS_SLAVE": ["10.0.0.5"],
    "HANDLE_INVALID": ["VM", VM],
    "UUID_INVALID": ["SR", "3928a6a4-1acd-c134-ed35-eb0ccfaed65c"],
    "MESSAGE_METHOD_UNKNOWN": ["VM.set_NVRAM"],
    "MESSAGE_PARAMETER_COUNT_MISMATCH": ["VM.start", "2", "3"],
    "FIELD_TYPE_ERROR": ["VCPUs_max"],
    "INVALID_VALUE": ["VCPUs_max", "0"],
    "MAP_DUPLICATE_KEY": ["VM", "other_config", VM, "xsddkvm"],
    "INTERNAL_ERROR": ["Db_exn.Read_missing_uuid"],
    "PERMISSION_DENIED": ["only the local superuser may do this"],
    "RBAC_PERMISSION_DENIED": ["vm.start", "The role read-only lacks it"],
    "LICENCE_RESTRICTION": ["VDI.snapshot"],
    "NOT_SUPPORTED_DURING_UPGRADE": [],
    "OPERATION_NOT_ALLOWED": ["VIF currently attached to a running VM"],
    "OPERATION_BLOCKED": [VM, "kept by the admins"],
    "OTHER_OPERATION_IN_PROGRESS": ["VM", VM, "clean_shutdown", TASK],
    "VM_BAD_POWER_STATE": [VM, "halted", "running"],
    "VM_IS_TEMPLATE": [VM, "start"],
    "VM_HVM_REQUIRED": [VM],
    "VM_LACKS_FEATURE": [VM],
    "VM_MISSING_PV_DRIVERS": [VM],
    "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT": [VM],
    "VM_SHUTDOWN_TIMEOUT": [VM, "1200."],
    "VM_REQUIRES_SR": [VM, "OpaqueRef:aa11"],
    "VM_REQUIRES_NETWORK": [VM, "OpaqueRef:bb22"],
    "NO_HOSTS_AVAILABLE": [],
    "HOST_NOT_ENOUGH_FREE_MEMORY": ["4294967296", "1073741824"],
    "BOOTLOADER_FAILED": [VM, "Unable to find partition containing kernel"],
    "UNKNOWN_BOOTLOADER": [VM, "eliloader"],
    "DEVICE_ALREADY_EXISTS": ["0"],
    "INVALID_DEVICE": ["eth0"],
    "MAC_INVALID": ["zz:11:22:33:44:55"],
    "VDI_IN_USE": ["OpaqueRef:cc33", "destroy"],
    "SR_FULL": ["21474836480", "10737418240"],
    "SR_BACKEND_FAILURE_44": ["", "There is insufficient space", ""],
    "SR_BACKEND_FAILURE": ["non-zero exit", "The SR is not available", "lvm: no such device"],
    "SR_OPERATION_NOT_SUPPORTED": ["OpaqueRef:dd44"],
    "VDI_MISSING": ["OpaqueRef:dd44", "OpaqueRef:ee55"],
    "DEFAULT_SR_NOT_FOUND": ["OpaqueRef:NULL"],
    "IMPORT_ERROR": ["404 Not Found"],
    "IMPORT_ERROR_PREMATURE_EOF": [],
    "IMPORT_ERROR_SOME_CHECKSUMS_FAILED": [],
    "IMPORT_ERROR_CANNOT_HANDLE_CHUNKED": [],
    "IMPORT_ERROR_FAILED_TO_FIND_OBJECT": ["Ref:12"],
    "IMPORT_ERROR_UNEXPECTED_FILE": ["ova.xml", "Ref:4/00000000"],
    "IMPORT_INCOMPATIBLE_VERSION": [],
    "TASK_CANCELLED": [TASK],
    "EVENTS_LOST": [],
    "EVENT_FROM_TOKEN_PARSE_FAILURE": ["garbage-token"],
    "INVALID_UPDATE": ["missing <uuid> in update.xml"],
    "UPDATE_ALREADY_EXISTS": ["9b0e2e5c-7f3a-4c1e-8d2b-1a2b3c4d5e6f"],
    "UPDATE_ALREADY_APPLIED": [UPD],
    "UPDATE_ALREADY_APPLIED_IN_POOL": [UPD],
    "UPDATE_PRECHECK_FAILED_UNKNOWN_ERROR": [UPD, "precheck script crashed"],
    "UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING": [UPD, "XS82ECU1010"],
    "UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT": [UPD, "mydriver-1.0"],
    "UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION": [UPD, "8.2.1", "8.4.0"],
    "UPDATE_PRECHECK_FAILED_OUT_OF_SPACE": [UPD, "1048576", "52428800"],
    "UPDATE_PRECHECK_FAILED_GPGKEY_NOT_IMPORTED": [UPD],
    "UPDATE_APPLY_FAILED": ["Error: Package: mydriver requires kernel >= 4.19"],
    "UPDATE_IS_APPLIED": [],
    "OUT_OF_SPACE": ["/var/update"],
    "XENAPI_PLUGIN_FAILURE": ["non-zero exit", "", "Traceback: KeyError"],
    "XENAPI_MISSING_PLUGIN": ["updater.py"],
}

REQUIRED = """
SESSION_AUTHENTICATION_FAILED SESSION_INVALID HOST_IS_SLAVE HANDLE_INVALID UUID_INVALID
MESSAGE_METHOD_UNKNOWN MESSAGE_PARAMETER_COUNT_MISMATCH INTERNAL_ERROR PERMISSION_DENIED
RBAC_PERMISSION_DENIED OPERATION_NOT_ALLOWED OPERATION_BLOCKED OTHER_OPERATION_IN_PROGRESS
VM_BAD_POWER_STATE VM_IS_TEMPLATE VM_HVM_REQUIRED VM_LACKS_FEATURE VM_MISSING_PV_DRIVERS
VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT VM_SHUTDOWN_TIMEOUT VM_REQUIRES_SR VM_REQUIRES_NETWORK
NO_HOSTS_AVAILABLE HOST_NOT_ENOUGH_FREE_MEMORY BOOTLOADER_FAILED UNKNOWN_BOOTLOADER SR_FULL
SR_BACKEND_FAILURE_44 SR_OPERATION_NOT_SUPPORTED VDI_IN_USE VDI_MISSING
DEVICE_ALREADY_EXISTS INVALID_DEVICE MAC_INVALID TASK_CANCELLED DEFAULT_SR_NOT_FOUND
IMPORT_ERROR IMPORT_ERROR_PREMATURE_EOF IMPORT_ERROR_SOME_CHECKSUMS_FAILED
IMPORT_ERROR_CANNOT_HANDLE_CHUNKED IMPORT_ERROR_FAILED_TO_FIND_OBJECT
IMPORT_ERROR_UNEXPECTED_FILE IMPORT_INCOMPATIBLE_VERSION LICENCE_RESTRICTION
MAP_DUPLICATE_KEY INVALID_VALUE FIELD_TYPE_ERROR EVENTS_LOST EVENT_FROM_TOKEN_PARSE_FAILURE
NOT_SUPPORTED_DURING_UPGRADE INVALID_UPDATE UPDATE_ALREADY_EXISTS UPDATE_ALREADY_APPLIED
UPDATE_ALREADY_APPLIED_IN_POOL UPDATE_PRECHECK_FAILED_UNKNOWN_ERROR
UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT
UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION UPDATE_PRECHECK_FAILED_OUT_OF_SPACE
UPDATE_PRECHECK_FAILED_GPGKEY_NOT_IMPORTED UPDATE_APPLY_FAILED UPDATE_IS_APPLIED
OUT_OF_SPACE XENAPI_PLUGIN_FAILURE XENAPI_MISSING_PLUGIN""".split()

STORAGE_CODES = {
    "SR_FULL",
    "SR_BACKEND_FAILURE",
    "SR_BACKEND_FAILURE_44",
    "SR_OPERATION_NOT_SUPPORTED",
    "DEFAULT_SR_NOT_FOUND",
    "VDI_MISSING",
    "VM_REQUIRES_SR",
    "OUT_OF_SPACE",
}
# A hint names something to run or change: a command, a playbook key or a XenCenter action.
ACTIONABLE = re.compile(r"`[^`]+`|XenCenter")


def details_for(code: str) -> list[str]:
    return [code, *EXAMPLES[code]]


def expected_class(code: str) -> type[XsddkvmError]:
    """The class rules of the brief, written independently of the table."""
    if code == "SESSION_AUTHENTICATION_FAILED":
        return AuthError
    if code.startswith("IMPORT_"):
        return ImageError
    if code.startswith("UPDATE_") or code == "INVALID_UPDATE":
        return InstallError
    if code in STORAGE_CODES:
        return StorageError
    return HostAPIError


def test_the_table_covers_every_required_code_and_every_example() -> None:
    assert set(REQUIRED) <= set(failures.FAILURES)
    assert set(EXAMPLES) == set(failures.FAILURES)


@pytest.mark.parametrize("code", sorted(failures.FAILURES))
def test_every_code_explains_itself(code: str) -> None:
    params = EXAMPLES[code]
    err = failures.explain_failure([code, *params], host=HOST, action=ACTION)
    cls = expected_class(code)
    assert isinstance(err, cls) and type(err).exit_code == cls.exit_code
    shown_params = ["***"] if code == "SESSION_INVALID" else params  # a session ref is a credential
    assert err.code == code and err.params == shown_params  # type: ignore[attr-defined]
    assert HOST in err.message and ACTION in err.message and code in err.message
    entry = failures.FAILURES[code]
    templates = entry.what + entry.cause
    for name, value in zip(entry.params, params):
        if "{" + name + "}" in templates:
            assert value in err.message, name
    assert err.hint and ACTIONABLE.search(err.hint), err.hint
    text = err.paragraph()
    assert "{" not in text and "}" not in text and "\n" not in text
    assert len(text) < 450, len(text)


@pytest.mark.parametrize("code", sorted(failures.FAILURES))
def test_missing_parameters_do_not_break_the_text(code: str) -> None:
    err = failures.explain_failure([code], host=HOST, action=ACTION)
    text = err.paragraph()
    assert "{" not in text and "()" not in text and "  " not in text and " ." not in text


def test_session_authentication_failed_names_user_and_password_source() -> None:
    err = failures.explain_failure(
        details_for("SESSION_AUTHENTICATION_FAILED"), host=HOST, action=ACTION
    )
    assert "user root" in err.message
    assert "host.password_env" in (err.hint or "") and "host.password_file" in (err.hint or "")
    assert err.to_dict()["xapi_code"] == "SESSION_AUTHENTICATION_FAILED"
    assert err.to_dict()["exit_code"] == ExitCode.AUTH


def test_host_is_slave_names_the_master() -> None:
    err = failures.explain_failure(details_for("HOST_IS_SLAVE"), host=HOST, action=ACTION)
    assert "master is 10.0.0.5" in err.message
    assert "https://10.0.0.5" in (err.hint or "") and "host.url" in (err.hint or "")


def test_sr_backend_failure_44_is_about_free_space() -> None:
    err = failures.explain_failure(details_for("SR_BACKEND_FAILURE_44"), host=HOST, action=ACTION)
    assert "free space" in err.message and "vm.sr" in (err.hint or "")


def test_any_sr_backend_failure_is_a_storage_error_naming_its_code() -> None:
    details = ["SR_BACKEND_FAILURE_109", "", "The snapshot chain is too long", ""]
    err = failures.explain_failure(details, host=HOST, action=ACTION)
    assert isinstance(err, StorageError) and err.code == "SR_BACKEND_FAILURE_109"
    assert "SR_BACKEND_FAILURE_109" in err.message and "snapshot chain" in err.message


def test_default_sr_not_found_says_set_vm_sr() -> None:
    err = failures.explain_failure(details_for("DEFAULT_SR_NOT_FOUND"), host=HOST, action=ACTION)
    assert "Set `vm.sr`" in (err.hint or "")


def test_update_already_applied_says_already_installed() -> None:
    err = failures.explain_failure(details_for("UPDATE_ALREADY_APPLIED"), host=HOST, action=ACTION)
    assert "already installed" in err.message


def test_vm_bad_power_state_reads_naturally() -> None:
    err = failures.explain_failure(details_for("VM_BAD_POWER_STATE"), host=HOST, action="starting")
    assert f"the VM {VM} is running but this step needs it halted" in err.message


def test_unknown_code_keeps_code_and_params_and_still_helps() -> None:
    err = failures.explain_failure(["VTPM_MAX_AMOUNT_REACHED", "1"], host=HOST, action=ACTION)
    assert type(err) is HostAPIError
    assert err.code == "VTPM_MAX_AMOUNT_REACHED" and err.params == ["1"]
    assert "VTPM_MAX_AMOUNT_REACHED (1)" in err.message and HOST in err.message
    assert "XenServer documentation" in (err.hint or "")
    assert "xsddkvm doctor" in (err.hint or "")


def test_empty_error_description_does_not_crash() -> None:
    err = failures.explain_failure([], host=HOST, action=ACTION)
    assert isinstance(err, HostAPIError) and "xsddkvm doctor" in (err.hint or "")


def test_session_refs_never_reach_the_text() -> None:
    ref = "OpaqueRef:5f1d3810-45d1-0762-81f6-18b198b52e0c"
    for details in (["SESSION_INVALID", ref], ["HANDLE_INVALID", "session", ref]):
        err = failures.explain_failure(details, host=HOST, action=ACTION)
        assert ref not in err.paragraph() and ref not in str(err.to_dict())


def test_secrets_and_long_output_are_tamed() -> None:
    secret = Secret("pa55-Word-in-a-param")
    details = ["UPDATE_APPLY_FAILED", f"line one\nline two {secret.reveal()}\n" + "x" * 500]
    err = failures.explain_failure(details, host=HOST, action=ACTION)
    assert secret.reveal() not in err.paragraph() and secret.reveal() not in str(err.to_dict())
    assert "line one line two ***" in err.message and "\n" not in err.message
    assert len(err.paragraph()) < 450


def test_every_playbook_key_a_hint_names_exists() -> None:
    hints = [e.hint for e in (*failures.FAILURES.values(), *failures.TRANSPORT.values())]
    keys = set(re.findall(r"`((?:host|vm|image)\.[a-z_]+)`", " ".join(hints)))
    assert {"host.url", "host.username", "host.tls_fingerprint", "vm.sr"} <= keys
    for key in keys:
        section, name = key.split(".")
        section_cls = type(getattr(Playbook(), section))
        assert name in {f.name for f in dataclasses.fields(section_cls)}, key


def test_every_table_class_is_one_a_xapi_failure_may_use() -> None:
    for entry in failures.FAILURES.values():
        assert issubclass(entry.error, (HostAPIError, AuthError, ImageError))


# -- transport ---------------------------------------------------------------------------------
URL = "https://xs1.lab"


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised while handling ``inner``, as requests/urllib3 do."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


def cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify")
    exc.verify_message = "self-signed certificate"  # set by _ssl on a real handshake
    return exc


def wrapped_refused() -> BaseException:
    new_conn = chained(
        urllib3.exceptions.NewConnectionError(None, "Failed to connect"),  # type: ignore[arg-type]
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    )
    retry = urllib3.exceptions.MaxRetryError(None, "/import", new_conn)  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(retry)


# fmt: off
TRANSPORT_CASES: list[tuple[str, Callable[[], BaseException], type[XsddkvmError], str]] = [
    ("dns", lambda: socket.gaierror(-2, "Name or service not known"), HostUnreachableError,
     "the host name xs1.lab in https://xs1.lab could not be resolved"),
    ("refused", lambda: ConnectionRefusedError(111, "Connection refused"), HostUnreachableError,
     "refused the connection on port 443"),
    ("timeout", lambda: TimeoutError("timed out"), HostUnreachableError, "did not answer in time"),
    ("socket.timeout", lambda: socket.timeout("timed out"), HostUnreachableError,
     "did not answer in time"),
    ("cert", cert_error, TLSError, "not signed by a CA this machine trusts (self-signed"),
    ("ssl", lambda: ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
     TLSError, "secure (TLS) connection"),
    ("reset", lambda: ConnectionResetError(104, "Connection reset by peer"),
     HostUnreachableError, "closed the connection (Connection reset by peer)"),
    ("no route", lambda: OSError(errno.EHOSTUNREACH, "No route to host"), HostUnreachableError,
     "https://xs1.lab could not be reached (No route to host)"),
    ("requests refused", wrapped_refused, HostUnreachableError, "refused the connection"),
    ("requests bare", lambda: requests.exceptions.ConnectionError("boom"), HostUnreachableError,
     "could not be reached"),
    ("requests connect timeout", lambda: requests.exceptions.ConnectTimeout("slow"),
     HostUnreachableError, "did not answer in time"),
    ("requests read timeout", lambda: requests.exceptions.ReadTimeout("slow"),
     HostUnreachableError, "did not answer in time"),
    ("requests ssl", lambda: requests.exceptions.SSLError("handshake"), TLSError, "(TLS)"),
    ("requests cert", lambda: chained(requests.exceptions.SSLError("x"), cert_error()),
     TLSError, "not signed by a CA"),
    ("http 404", lambda: xmlrpc.client.ProtocolError("xs1.lab/", 404, "Not Found", {}),
     HostUnreachableError, "answered HTTP 404 Not Found"),
    ("fault", lambda: xmlrpc.client.Fault(500, "Tried 3 times to get a valid session"),
     HostAPIError, "fault 500: Tried 3 times"),
    ("fault no status", lambda: xmlrpc.client.Fault(500, "Missing Status in response fromxx"),
     HostUnreachableError, "not a XenAPI endpoint"),
    ("sdk bug", lambda: TypeError('can only concatenate str (not "list") to str'),
     HostUnreachableError, "not a XenAPI endpoint"),
    ("bad http", lambda: http.client.BadStatusLine("SSH-2.0-OpenSSH_9.2"), HostUnreachableError,
     "did not answer with valid HTTP"),
    ("other", lambda: ValueError("odd"), HostUnreachableError, "failed with ValueError: odd"),
]
# fmt: on


@pytest.mark.parametrize("name,make,cls,text", TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_map_to_the_right_error(
    name: str, make: Callable[[], BaseException], cls: type[XsddkvmError], text: str
) -> None:
    err = failures.explain_transport(make(), url=URL, action="logging in")
    assert type(err).exit_code == cls.exit_code and isinstance(err, cls)
    assert text in err.message and "While logging in" in err.message
    assert err.hint and ACTIONABLE.search(err.hint)
    assert "{" not in err.paragraph() and "\n" not in err.paragraph()


def test_untrusted_certificate_hint_offers_pinning_and_insecure() -> None:
    err = failures.explain_transport(cert_error(), url=URL, action="logging in")
    hint = err.hint or ""
    assert f"`xsddkvm host fingerprint {URL}`" in hint and "host.tls_fingerprint" in hint
    assert "--insecure" in hint and "not recommended" in hint


def test_session_id_and_url_password_are_stripped() -> None:
    ref = "OpaqueRef:0c8a3c2e-3f4b-4f59-8a7e-1d2c3b4a5f60"
    url = f"https://root:hunter2@xs1.lab/import?session_id={ref}&task_id=OpaqueRef:t1"
    detail = f"HTTPSConnectionPool: Max retries exceeded with url: /import?session_id={ref}"
    err = failures.explain_transport(OSError(errno.ENETUNREACH, detail), url=url, action="x")
    text = err.paragraph()
    assert ref not in text and "session_id" not in text and "hunter2" not in text
    assert "https://root@xs1.lab/import?task_id=OpaqueRef:t1" in text
    assert failures.scrub(f"/import?task_id=t&session_id={ref}") == "/import?task_id=t"


def test_a_known_secret_never_appears_in_transport_text() -> None:
    secret = Secret("Tr4nsport-s3cret")
    exc = ConnectionResetError(104, f"peer said {secret.reveal()}")
    err = failures.explain_transport(exc, url=f"https://u:{secret.reveal()}@h", action="x")
    assert secret.reveal() not in err.paragraph() and secret.reveal() not in str(err.to_dict())


# -- the same failures, caused for real on loopback ---------------------------------------------
@contextlib.contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.socket.getsockname()[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.send_error(404)


class _NotXapi:
    def _dispatch(self, method: str, params: tuple[object, ...]) -> object:
        return ["a list, not a XenAPI result struct"]


def _server(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.HTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda *a: None  # type: ignore[method-assign]
    return server


def _login(url: str) -> BaseException:
    try:
        XenAPI.Session(url).xenapi.login_with_password("root", "pw", "1.0", "xsddkvm-test")
    except Exception as exc:
        return exc
    raise AssertionError("login unexpectedly worked")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_refused_connection_through_xenapi_and_requests() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    for exc in (_login(url), _request_error(url, timeout=5)):
        err = failures.explain_transport(exc, url=url, action="logging in")
        assert isinstance(err, HostUnreachableError) and "refused the connection" in err.message


def _request_error(url: str, timeout: float) -> BaseException:
    try:
        requests.put(url + "/import?session_id=OpaqueRef:abc", data=b"x", timeout=timeout)
    except requests.RequestException as exc:
        return exc
    raise AssertionError("request unexpectedly worked")


def test_real_timeout_through_requests() -> None:
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        exc = _request_error(url, timeout=0.2)
    err = failures.explain_transport(exc, url=url, action="uploading")
    assert isinstance(err, HostUnreachableError) and "did not answer in time" in err.message
    assert "OpaqueRef:abc" not in err.paragraph()


def test_real_web_server_answering_404() -> None:
    with serving(_server(_Quiet)) as port:
        url = f"http://127.0.0.1:{port}"
        err = failures.explain_transport(_login(url), url=url, action="logging in")
    assert isinstance(err, HostUnreachableError) and "answered HTTP 404" in err.message


def test_real_xmlrpc_server_that_is_not_xapi() -> None:
    server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    server.register_instance(_NotXapi())
    with serving(server) as port:
        url = f"http://127.0.0.1:{port}"
        exc = _login(url)
    assert isinstance(exc, TypeError)  # the SDK bug of env-probe.md section 1
    err = failures.explain_transport(exc, url=url, action="logging in")
    assert isinstance(err, HostUnreachableError) and "not a XenAPI endpoint" in err.message


def test_real_self_signed_certificate_and_plain_http_on_https(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls_server = _server(_Quiet)
    tls_server.socket = context.wrap_socket(tls_server.socket, server_side=True)
    with serving(tls_server) as tls_port, serving(_server(_Quiet)) as plain_port:
        untrusted = _login(f"https://127.0.0.1:{tls_port}")
        not_tls = _login(f"https://127.0.0.1:{plain_port}")
    err = failures.explain_transport(untrusted, url="https://127.0.0.1", action="logging in")
    assert isinstance(err, TLSError) and "not signed by a CA" in err.message
    err = failures.explain_transport(not_tls, url="https://127.0.0.1", action="logging in")
    assert isinstance(err, TLSError) and "secure (TLS) connection" in err.message


# -- docs ----------------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
REGENERATE = (
    "python -c \"from xsddkvm.xapi.failures import render_markdown as r; print(r(), end='')\""
    " > docs/troubleshooting.md"
)


def test_troubleshooting_page_matches_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == failures.render_markdown(), (
        f"docs/troubleshooting.md is stale; regenerate it with: {REGENERATE}"
    )


def test_troubleshooting_page_lists_every_code_once() -> None:
    page = failures.render_markdown()
    for code in failures.FAILURES:
        shown = "SR_BACKEND_FAILURE_<n>" if code == "SR_BACKEND_FAILURE" else code
        assert page.count(f"| `{shown}`") == 1, code
    assert "{" not in page
