"""XML-RPC in xapi's dialect: what the bytes on the wire look like, in both directions.

Rendering follows mirage/ocaml-rpc src/lib/xmlrpc.ml ``add_value`` with strict=false (shared/
reference/xenapi.md §1.2, xapi-records.md §1.1): strings are untyped ``<value>s</value>``,
64-bit ints are untyped decimal strings, only ``Int32`` gets ``<i4>``. Requests are parsed with
the standard library, which accepts every form xapi accepts.
"""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any
from xml.sax.saxutils import escape

HEADER = '<?xml version="1.0"?>'
# Bytes below 0x20 other than TAB, LF and CR are dropped by xapi's encoder.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


class Int32(int):
    """An int rendered as ``<i4>`` (xapi's Rpc.Int32, e.g. event.from ``valid_ref_counts``)."""


class WireError(ValueError):
    """The request body is not an XML-RPC method call."""


def _text(s: str) -> str:
    return escape(_CONTROL.sub("", s), {'"': "&quot;"})


def value(v: Any) -> str:
    """One ``<value>`` element in xapi's dialect."""
    parts: list[str] = []
    _render(v, parts)
    return "".join(parts)


def _render(v: Any, out: list[str]) -> None:
    if isinstance(v, bool):
        out.append(f"<value><boolean>{int(v)}</boolean></value>")
    elif isinstance(v, Int32):
        out.append(f"<value><i4>{int(v)}</i4></value>")
    elif isinstance(v, int):
        out.append(f"<value>{v}</value>")
    elif isinstance(v, float):
        out.append(f"<value><double>{v:.16g}</double></value>")
    elif isinstance(v, str):
        out.append(f"<value>{_text(v)}</value>")
    elif isinstance(v, xmlrpc.client.DateTime):
        out.append(f"<value><dateTime.iso8601>{v.value}</dateTime.iso8601></value>")
    elif v is None:
        out.append("<value><nil/></value>")
    elif isinstance(v, dict):
        out.append("<value><struct>")
        for key, item in v.items():
            out.append(f"<member><name>{_text(str(key))}</name>")
            _render(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(v, (list, tuple)):
        out.append("<value><array><data>")
        for item in v:
            _render(item, out)
        out.append("</data></array></value>")
    else:
        raise TypeError(f"cannot render {type(v).__name__} on the XML-RPC wire")


def _response(v: Any) -> bytes:
    body = f"{HEADER}<methodResponse><params><param>{value(v)}</param></params></methodResponse>"
    return body.encode("utf-8")


def success(v: Any) -> bytes:
    """A methodResponse carrying ``{"Status": "Success", "Value": v}``."""
    return _response({"Status": "Success", "Value": v})


def failure(description: list[str]) -> bytes:
    """A methodResponse carrying ``{"Status": "Failure", "ErrorDescription": [...]}``."""
    return _response({"Status": "Failure", "ErrorDescription": [str(d) for d in description]})


def raw(v: Any) -> bytes:
    """A methodResponse without the Status struct (xapi does this for system.listMethods)."""
    return _response(v)


def parse_request(body: bytes) -> tuple[str, list[Any]]:
    """The method name and parameters of a methodCall; raises ``WireError`` if malformed."""
    try:
        params, method = xmlrpc.client.loads(body)
    except Exception as exc:  # expat, ResponseError, bad base64/dates: all are parse errors
        raise WireError(str(exc) or type(exc).__name__) from exc
    if not method:
        raise WireError("no methodName in the request")
    return method, list(params)


def parse_error_page(detail: str) -> bytes:
    """The HTTP 500 body xapi sends for an unparsable request (ocaml/libs/http-lib/http_svr.ml
    ``response_internal_error``; wire-protocol.md "Errors")."""
    return (
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; "
        "please wait a while and try again. If the problem persists, please contact your "
        "support representative.<h1> Additional information </h1>"
        f"Xmlrpc.Parse_error({_text(detail)!r})</body></html>"
    ).encode()
