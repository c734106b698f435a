"""``PUT /import_raw_vdi?vdi=<ref>&format=raw``: write the request body into an existing VDI.

Source: ocaml/xapi/import_raw_vdi.ml. The session comes from the cookie or the query; the task
is the caller's ``task_id`` or a new one, and it, not the HTTP status, carries the outcome. The
simulator requires Content-Length (as for ``/import``) and serves the raw format only.
"""

from __future__ import annotations

from typing import Any

from .errors import XapiError
from .http_upload import RequestBody, accept, accepted_header, send, status, unauthorised
from .wire import value as xmlrpc_value

UNAUTHORISED = unauthorised("put_import_raw_vdi")


def handle_import_raw(host: Any, handler: Any) -> None:
    """Serve one ``PUT /import_raw_vdi`` on a BaseHTTPRequestHandler-like ``handler``."""
    accepted = accept(host, handler, "VDI import", UNAUTHORISED)
    if accepted is None:
        return
    params, task = accepted
    vdi = params.get("vdi", "")
    if not host.state.exists("VDI", vdi):
        send(handler, status("404 Not Found"))
        host.fail_task(task, XapiError("HANDLE_INVALID", "VDI", vdi))
        return
    if params.get("format", "raw") != "raw":
        send(handler, status("400 Bad Request"))
        host.fail_task(task, XapiError("INTERNAL_ERROR", "the simulator imports raw VDIs only"))
        return
    length = handler.headers.get("Content-Length")
    if handler.headers.get("Transfer-Encoding") is not None or not (length or "").isdigit():
        send(handler, status("411 Length Required"))
        host.fail_task(task, XapiError("INTERNAL_ERROR", "Content-Length required"))
        return
    host.set_task_progress(task, 0.0)
    send(handler, accepted_header(task))
    try:
        body = RequestBody(handler, int(length), host.scenario.faults.upload_cut_at_bytes)
        _copy(host, task, vdi, body, int(length))
    except Exception as exc:  # every failure fails the task; none may escape the handler
        host.fail_task(
            task, exc if isinstance(exc, XapiError) else XapiError("INTERNAL_ERROR", str(exc))
        )
        return
    host.complete_task(task, xmlrpc_value(vdi))


def _copy(host: Any, task: str, vdi: str, body: RequestBody, length: int) -> None:
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
