"""VDI, VBD, VIF and network constructors and destructors, with xapi's checks.

Sources: ocaml/xapi/xapi_vif_helpers.ml (VIF), xapi_vbd.ml / xapi_vbd_helpers.ml (VBD),
xapi_vdi.ml (VDI), xapi_network.ml (network); xapi-records.md §3.2-3.3, xenapi.md §5.1.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any, Callable

from .api_generic import check_ref, construct
from .errors import XapiError
from .state import NULL_REF

if TYPE_CHECKING:
    from .host import SimHost

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def gen_mac(device: int, seed: str) -> str:
    """The MAC xapi derives from the VM's ``mac_seed`` for a VIF device.

    ocaml/xapi/xapi_vif_helpers.ml gen_mac: MD5 applied 2*device+1 times to the seed, then once
    more; ocaml/xapi/record_util.ml mac_from_int_array sets the locally administered bit and
    clears the multicast bit of the first byte.
    """
    hashed = seed.encode()
    for _ in range(2 * device + 1):
        hashed = hashlib.md5(hashed).digest()
    second = hashlib.md5(hashed).digest()
    data = [hashed[0], hashed[1], hashed[2], hashed[3], second[1], second[2]]
    data[0] = (data[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in data)


def _device_number(device: Any) -> int:
    try:
        number = int(str(device))
    except ValueError:
        raise XapiError("INVALID_DEVICE", str(device)) from None
    if number < 0:
        raise XapiError("INVALID_DEVICE", str(device))
    return number


class DeviceMessages:
    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.state = host.state

    def messages(self) -> dict[str, Callable[..., Any]]:
        return {
            "VDI.create": self.vdi_create,
            "VDI.destroy": self.vdi_destroy,
            "VBD.create": self.vbd_create,
            "VBD.destroy": self.vbd_destroy,
            "VIF.create": self.vif_create,
            "VIF.destroy": self.vif_destroy,
            "network.create": self.network_create,
            "network.destroy": self.network_destroy,
        }

    # -- VDI --------------------------------------------------------------------------------
    def vdi_create(self, args: Any) -> str:
        fields = construct(
            "VDI", args, ("SR", "virtual_size", "type", "sharable", "read_only", "other_config"),
            ("name_label", "name_description", "xenstore_data", "sm_config", "tags"),
        )  # fmt: skip
        sr = check_ref(self.state, "SR", fields.pop("SR"))
        return self.host.create_vdi(sr, fields.pop("virtual_size"), **fields)

    def vdi_destroy(self, self_: str) -> str:
        with self.state.lock:
            vdi = self.state.get("VDI", self_)
            for vbd_ref in list(vdi["VBDs"]):
                vbd = self.state.get("VBD", vbd_ref)
                vm = self.state.get("VM", vbd["VM"])
                if vbd["currently_attached"] or vm["power_state"] != "Halted":
                    raise XapiError("VDI_IN_USE", self_, "destroy")
            # ocaml/xapi/xapi_vdi.ml destroy: also removes VBDs and suspend_VDI references.
            for vbd_ref in list(vdi["VBDs"]):
                self.state.destroy("VBD", vbd_ref)
            for vm_ref in self.state.find("VM", lambda v: v["suspend_VDI"] == self_):
                self.state.update("VM", vm_ref, suspend_VDI=NULL_REF)
            self.host.destroy_vdi(self_)
        return ""

    # -- VBD --------------------------------------------------------------------------------
    def vbd_create(self, args: Any) -> str:
        fields = construct(
            "VBD", args,
            ("VM", "VDI", "userdevice", "bootable", "mode", "type", "empty", "other_config",
             "qos_algorithm_type", "qos_algorithm_params"),
            ("unpluggable",),
        )  # fmt: skip
        with self.state.lock:
            vm = self.state.get("VM", check_ref(self.state, "VM", fields["VM"]))
            if fields["VDI"] != NULL_REF:
                check_ref(self.state, "VDI", fields["VDI"])
            used = {self.state.get("VBD", v)["userdevice"] for v in vm["VBDs"]}
            if fields["userdevice"] == "autodetect":
                fields["userdevice"] = next(str(i) for i in range(64) if str(i) not in used)
            _device_number(fields["userdevice"])
            if fields["userdevice"] in used:
                raise XapiError("DEVICE_ALREADY_EXISTS", fields["userdevice"])
            if fields["type"] == "CD" and fields["mode"] != "RO":
                raise XapiError("VBD_CDS_MUST_BE_READONLY")
            if fields["empty"] and fields["type"] != "CD":
                raise XapiError("VBD_NOT_REMOVABLE_MEDIA", "in constructor")
            return self.state.create("VBD", allowed_operations=["attach"], **fields)

    def vbd_destroy(self, self_: str) -> str:
        with self.state.lock:
            vbd = self.state.get("VBD", self_)
            if vbd["currently_attached"]:
                vm_uuid = self.state.get("VM", vbd["VM"])["uuid"]
                raise XapiError(
                    "OPERATION_NOT_ALLOWED", f"VBD '{vbd['uuid']}' still attached to '{vm_uuid}'"
                )
            self.state.destroy("VBD", self_)
        return ""

    # -- VIF --------------------------------------------------------------------------------
    def vif_create(self, args: Any) -> str:
        fields = construct(
            "VIF", args,
            ("device", "network", "VM", "MAC", "MTU", "other_config", "qos_algorithm_type",
             "qos_algorithm_params"),
            ("locking_mode", "ipv4_allowed", "ipv6_allowed"),
        )  # fmt: skip
        with self.state.lock:
            vm = self.state.get("VM", check_ref(self.state, "VM", fields["VM"]))
            check_ref(self.state, "network", fields["network"])
            device = _device_number(fields["device"])
            if any(self.state.get("VIF", v)["device"] == fields["device"] for v in vm["VIFs"]):
                raise XapiError("DEVICE_ALREADY_EXISTS", fields["device"])
            if fields["MAC"] == "":
                seed = vm["other_config"].get("mac_seed")
                if seed is None:
                    raise XapiError("MAC_INVALID", "")
                fields.update(MAC=gen_mac(device, seed), MAC_autogenerated=True)
            elif not _MAC.match(fields["MAC"]):
                raise XapiError("MAC_INVALID", fields["MAC"])
            return self.state.create("VIF", allowed_operations=["attach"], **fields)

    def vif_destroy(self, self_: str) -> str:
        with self.state.lock:
            vif = self.state.get("VIF", self_)
            vm = self.state.get("VM", vif["VM"])
            if vif["currently_attached"] and vm["power_state"] == "Running":
                raise XapiError("OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM")
            self.state.destroy("VIF", self_)
        return ""

    # -- network ----------------------------------------------------------------------------
    def network_create(self, args: Any) -> str:
        fields = construct(
            "network", args, ("other_config",),
            ("name_label", "name_description", "MTU", "bridge", "managed", "tags"),
        )  # fmt: skip
        with self.state.lock:
            bridges = {n["bridge"] for n in self.state.all("network").values()}
            bridge = fields.get("bridge", "")
            if not bridge:
                bridge = next(
                    f"xapi{i}" for i in range(len(bridges) + 1) if f"xapi{i}" not in bridges
                )
            elif bridge in bridges:
                raise XapiError("BRIDGE_NAME_EXISTS", bridge)
            fields["bridge"] = bridge
            if fields.get("MTU", 1500) <= 0:
                fields["MTU"] = 1500
            return self.state.create("network", **fields)

    def network_destroy(self, self_: str) -> str:
        with self.state.lock:
            network = self.state.get("network", self_)
            if network["PIFs"]:
                raise XapiError("NETWORK_CONTAINS_PIF", *network["PIFs"])
            if network["VIFs"]:
                raise XapiError("NETWORK_CONTAINS_VIF", *network["VIFs"])
            self.state.destroy("network", self_)
        return ""
