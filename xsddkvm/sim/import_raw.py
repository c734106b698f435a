"""``PUT /import_raw_vdi?vdi=<ref>&format=raw``: write the request body into an existing VDI.

Source: ocaml/xapi/import_raw_vdi.ml. The session comes from the cookie or the query; the task
is the caller's ``task_id`` or a new one, and it, not the HTTP status, carries the outcome. The
simulator requires Content-Length (as for ``/import``) and serves the raw format only.
"""

from __future__ import annotations

from typing import Any

from .errors import XapiError
from .import_xva import _NO_CACHE, _Body, _params, _send
from .wire import value as xmlrpc_value

# ocaml/libs/http-lib/http_svr.ml response_unauthorised, realm = handler name
UNAUTHORISED = (
    b"HTTP/1.1 401 Unauthorised\r\ncontent-type: text/html\r\nconnection: close\r\n"
    b'cache-control: no-cache, no-store\r\nWWW-Authenticate: Basic realm="put_import_raw_vdi"'
    b"\r\n\r\n<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and "
    b"retry.</body></html>"
)


def _status(code: str) -> bytes:
    return b"HTTP/1.1 " + code.encode() + b"\r\n" + _NO_CACHE + b"\r\n"


def handle_import_raw(host: Any, handler: Any) -> None:
    """Serve one ``PUT /import_raw_vdi`` on a BaseHTTPRequestHandler-like ``handler``."""
    params = _params(handler)
    session = params.get("session_id", "")
    try:
        host.check_session(session)
    except XapiError:
        _send(handler, UNAUTHORISED)
        return
    task = params.get("task_id") or host.create_task("VDI import", session_ref=session)
    if not host.state.exists("task", task):
        _send(handler, _status("500 Internal Server Error"))
        return
    vdi = params.get("vdi", "")
    if not host.state.exists("VDI", vdi):
        _send(handler, _status("404 Not Found"))
        host.fail_task(task, XapiError("HANDLE_INVALID", "VDI", vdi))
        return
    if params.get("format", "raw") != "raw":
        _send(handler, _status("400 Bad Request"))
        host.fail_task(task, XapiError("INTERNAL_ERROR", "the simulator imports raw VDIs only"))
        return
    length = handler.headers.get("Content-Length")
    if handler.headers.get("Transfer-Encoding") is not None or not (length or "").isdigit():
        _send(handler, _status("411 Length Required"))
        host.fail_task(task, XapiError("INTERNAL_ERROR", "Content-Length required"))
        return
    host.set_task_progress(task, 0.0)
    _send(
        handler,
        b"HTTP/1.1 200 OK\r\n" + _NO_CACHE + b"task-id:" + task.encode() + b"\r\n"
        b"content-type: application/octet-stream\r\n\r\n",
    )
    try:
        body = _Body(handler, int(length), host.scenario.faults.upload_cut_at_bytes)
        _copy(host, task, vdi, body, int(length))
    except Exception as exc:  # every failure fails the task; none may escape the handler
        host.fail_task(
            task, exc if isinstance(exc, XapiError) else XapiError("INTERNAL_ERROR", str(exc))
        )
        return
    host.complete_task(task, xmlrpc_value(vdi))


def _copy(host: Any, task: str, vdi: str, body: _Body, length: int) -> None:
    """Write the body at offset 0 of the VDI's file; more bytes than its size is an I/O error."""
    size = int(host.state.get("VDI", vdi)["virtual_size"])
    total = max(length, 1)
    done, shown = 0, 0.0
    with open(host.vdi_path(vdi), "r+b") as f:
        while True:
            data = body.pull()
            if not data:
                break
            if done + len(data) > size:
                raise XapiError("VDI_IO_ERROR", f"the data is larger than the VDI ({size} bytes)")
            f.write(data)
            done += len(data)
            if host.task_cancelled(task):
                raise XapiError("TASK_CANCELLED", task)
            if done / total - shown >= 0.01:
                shown = done / total
                host.set_task_progress(task, min(shown, 0.99))
