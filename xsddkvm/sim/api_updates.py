"""pool_update messages: introduce an update ISO from a VDI, precheck, apply, clean, destroy.

Source: ocaml/xapi/xapi_pool_update.ml (xapi-records.md §2.17, §3.3 "pool_update"). The VDI
holds an ISO 9660 image with ``update.xml`` at its root, as built by the DDK's build-update:
``<update name-label= name-description= version= uuid= installation-size=
after-apply-guidance= key= enforce-homogeneity=>``.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Callable

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from .api_generic import check_ref
from .errors import XapiError
from .state import NULL_REF

if TYPE_CHECKING:
    from .host import SimHost

_GUIDANCE = {"restartHVM", "restartPV", "restartHost", "restartXAPI"}


def read_update_xml(iso_path: str) -> bytes:
    """``update.xml`` from the root of the ISO image at ``iso_path``; INVALID_UPDATE if absent."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open(iso_path)
    except (PyCdlibException, OSError) as exc:
        raise XapiError("INVALID_UPDATE", f"the VDI is not an ISO image ({exc})") from None
    try:
        for kind, path in (("rr_path", "/update.xml"), ("joliet_path", "/update.xml"),
                           ("iso_path", "/UPDATE.XML;1")):  # fmt: skip
            out = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(out, **{kind: path})
            except PyCdlibException:
                continue
            return out.getvalue()
    finally:
        iso.close()
    raise XapiError("INVALID_UPDATE", "missing update.xml")


def parse_update_xml(data: bytes) -> dict[str, Any]:
    """The pool_update fields an ``update.xml`` declares (INVALID_UPDATE when malformed)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise XapiError("INVALID_UPDATE", f"update.xml is not XML ({exc})") from None
    if root.tag != "update":
        raise XapiError("INVALID_UPDATE", "missing <update> in update.xml")
    for attr in ("name-label", "uuid", "version"):
        if not root.get(attr):
            # xapi_pool_update.ml parse_update_info: "missing <attr> in update.xml"
            raise XapiError("INVALID_UPDATE", f"missing <{attr}> in update.xml")
    description = root.findtext("name-description") or root.get("name-description", "")
    guidance = [g for g in root.get("after-apply-guidance", "").split(",") if g in _GUIDANCE]
    try:
        size = int(root.get("installation-size", "0"))
    except ValueError:
        raise XapiError("INVALID_UPDATE", "installation-size is not a number") from None
    return {
        "uuid": root.get("uuid"),
        "name_label": root.get("name-label"),
        "name_description": description,
        "version": root.get("version"),
        "installation_size": size,
        "key": root.get("key", ""),
        "after_apply_guidance": guidance,
        "enforce_homogeneity": root.get("enforce-homogeneity", "false") == "true",
    }


class UpdateMessages:
    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.state = host.state

    def messages(self) -> dict[str, Callable[..., Any]]:
        return {
            "pool_update.introduce": self.introduce,
            "pool_update.precheck": self.precheck,
            "pool_update.apply": self.apply,
            "pool_update.pool_apply": self.pool_apply,
            "pool_update.pool_clean": self.pool_clean,
            "pool_update.destroy": self.destroy,
        }

    def introduce(self, vdi: str) -> str:
        check_ref(self.state, "VDI", vdi)
        fields = parse_update_xml(read_update_xml(str(self.host.vdi_path(vdi))))
        with self.state.lock:
            if self.state.find("pool_update", lambda u: u["uuid"] == fields["uuid"]):
                raise XapiError("UPDATE_ALREADY_EXISTS", fields["uuid"])
            return self.state.create("pool_update", vdi=vdi, **fields)

    def precheck(self, self_: str, host: str) -> str:
        with self.state.lock:
            update = self.state.get("pool_update", self_)
            check_ref(self.state, "host", host)
            if host in update["hosts"]:
                raise XapiError("UPDATE_ALREADY_APPLIED", self_)
            return "ok"  # livepatch_status: no livepatch in the simulator

    def apply(self, self_: str, host: str) -> str:
        with self.state.lock:
            self.precheck(self_, host)
            self.host.mark_update_applied(self_, host)
        return ""

    def pool_apply(self, self_: str) -> str:
        with self.state.lock:
            update = self.state.get("pool_update", self_)
            pending = [h for h in self.host.hosts if h not in update["hosts"]]
            if not pending:
                raise XapiError("UPDATE_ALREADY_APPLIED_IN_POOL", self_)
            for host in pending:
                self.host.mark_update_applied(self_, host)
        return ""

    def pool_clean(self, self_: str) -> str:
        with self.state.lock:
            vdi = self.state.get("pool_update", self_)["vdi"]
            if self.state.exists("VDI", vdi):
                for vbd in list(self.state.get("VDI", vdi)["VBDs"]):
                    self.state.destroy("VBD", vbd)
                self.host.destroy_vdi(vdi)
            self.state.update("pool_update", self_, vdi=NULL_REF)
        return ""

    def destroy(self, self_: str) -> str:
        with self.state.lock:
            if self.state.get("pool_update", self_)["hosts"]:
                raise XapiError("UPDATE_IS_APPLIED")
            self.pool_clean(self_)
            self.state.destroy("pool_update", self_)
        return ""
