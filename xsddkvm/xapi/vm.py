"""VM, VIF, VBD and VDI verbs over a ``XapiSession``, and the tags that make leaks findable."""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import socket
import uuid
from typing import Any, Optional

from ..errors import ConfigError, StorageError
from .session import XapiSession

NULL = "OpaqueRef:NULL"
TAG = "xsddkvm"  # other_config key prefix of every object xsddkvm creates


@dataclasses.dataclass(frozen=True)
class BuildIdentity:
    """Who created an object: written into ``other_config`` the moment it exists."""

    build_id: str
    owner: str
    pid: int
    created: str
    purpose: str = "build"

    @classmethod
    def new(cls, purpose: str = "build") -> BuildIdentity:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        owner = f"{getpass.getuser()}@{socket.gethostname()}"
        return cls(uuid.uuid4().hex[:12], owner, os.getpid(), now, purpose)

    def tags(self) -> dict[str, str]:
        return {
            f"{TAG}.build_id": self.build_id,
            f"{TAG}.owner": self.owner,
            f"{TAG}.pid": str(self.pid),
            f"{TAG}.created": self.created,
            f"{TAG}.purpose": self.purpose,
        }


def tag(xs: XapiSession, cls: str, ref: str, tags: dict[str, str]) -> None:
    """Merge ``tags`` into an object's ``other_config``."""
    with xs.doing(f"tagging the new {cls}"):
        api = getattr(xs.api, cls)
        other = dict(api.get_other_config(ref))
        other.update(tags)
        api.set_other_config(ref, other)


def find_sr(xs: XapiSession, name: Optional[str]) -> str:
    """The SR named (label or UUID) in the playbook, else the pool's default SR."""
    with xs.doing("looking up the storage repository"):
        if name:
            for ref, rec in xs.api.SR.get_all_records().items():
                if name in (rec["uuid"], rec["name_label"]):
                    return str(ref)
            raise ConfigError(
                f"vm.sr: no SR named {name!r} on {xs.host_label}.",
                "List SRs with `xe sr-list` on the host, or run `xsddkvm doctor` to see them.",
            )
        pool = xs.api.pool.get_all()[0]
        default = str(xs.api.pool.get_default_SR(pool))
        if default in (NULL, "") or not _exists(xs, "SR", default):
            raise StorageError(
                f"The pool at {xs.host_label} has no default SR and the playbook names none.",
                "Set vm.sr in the playbook to an SR name or UUID, or set a default SR in XenCenter.",
                code="DEFAULT_SR_NOT_FOUND",
                params=[default],
            )
        return default


def _exists(xs: XapiSession, cls: str, ref: str) -> bool:
    return ref in getattr(xs.api, cls).get_all()


def sr_free_bytes(xs: XapiSession, sr: str) -> int:
    with xs.doing("reading the SR's free space"):
        rec = xs.api.SR.get_record(sr)
    return int(rec["physical_size"]) - int(rec["physical_utilisation"])


def find_network(xs: XapiSession, name: Optional[str]) -> str:
    """The network named (label, bridge or UUID), else the management network."""
    with xs.doing("looking up the network"):
        networks = xs.api.network.get_all_records()
        if name:
            for ref, rec in networks.items():
                if name in (rec["uuid"], rec["name_label"], rec["bridge"]):
                    return str(ref)
            labels = ", ".join(sorted(r["name_label"] for r in networks.values()))
            raise ConfigError(
                f"vm.network: no network named {name!r} on {xs.host_label} (it has: {labels}).",
                "Set vm.network to one of those names, or leave it out to use the management network.",
            )
        for rec in xs.api.PIF.get_all_records().values():
            if rec["management"]:
                return str(rec["network"])
    raise ConfigError(
        f"{xs.host_label} reports no management network.",
        "Set vm.network in the playbook to the network the DDK should use.",
    )


def add_vif(xs: XapiSession, vm: str, network: str, tags: dict[str, str]) -> tuple[str, str]:
    """Create a VIF on ``network``; returns (VIF ref, device number)."""
    with xs.doing("adding a network interface to the DDK VM"):
        devices = [str(d) for d in xs.api.VM.get_allowed_VIF_devices(vm)]
        device = devices[0] if devices else "0"
        vif = xs.api.VIF.create(
            {
                "device": device,
                "network": network,
                "VM": vm,
                "MAC": "",
                "MTU": "1500",
                "other_config": tags,
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
                "locking_mode": "network_default",
                "ipv4_allowed": [],
                "ipv6_allowed": [],
            }
        )
    return str(vif), device


def disks_of(xs: XapiSession, vm: str) -> list[str]:
    """VDI refs of the VM's disk VBDs."""
    with xs.doing("listing the VM's disks"):
        vdis = []
        for vbd in xs.api.VM.get_VBDs(vm):
            rec = xs.api.VBD.get_record(vbd)
            if rec["type"] == "Disk" and rec["VDI"] not in (NULL, ""):
                vdis.append(str(rec["VDI"]))
        return vdis


def configure(
    xs: XapiSession, vm: str, *, name: str, memory_mib: int, vcpus: int, pv_args: Optional[str]
) -> None:
    """Name, size and boot arguments of a halted VM."""
    memory = str(memory_mib * 1024 * 1024)
    with xs.doing("configuring the DDK VM"):
        xs.api.VM.set_name_label(vm, name)
        xs.api.VM.set_memory_limits(vm, memory, memory, memory, memory)
        xs.api.VM.set_VCPUs_max(vm, str(vcpus))
        xs.api.VM.set_VCPUs_at_startup(vm, str(vcpus))
        if pv_args is not None:
            xs.api.VM.set_PV_args(vm, pv_args)


def power_state(xs: XapiSession, vm: str) -> str:
    with xs.doing("reading the VM's power state"):
        return str(xs.api.VM.get_power_state(vm))


def stop(xs: XapiSession, vm: str) -> None:
    """Hard shutdown unless already halted (a throwaway VM needs no clean shutdown)."""
    if power_state(xs, vm) != "Halted":
        with xs.doing("shutting down the DDK VM"):
            xs.api.VM.hard_shutdown(vm)


def destroy_with_disks(xs: XapiSession, vm: str) -> list[str]:
    """Shut down, destroy the VM (its VBDs, VIFs go with it), then its VDIs; returns the VDIs."""
    stop(xs, vm)
    vdis = disks_of(xs, vm)
    with xs.doing("removing the DDK VM"):
        xs.api.VM.destroy(vm)
        for vdi in vdis:
            xs.api.VDI.destroy(vdi)
    return vdis


def guest_ip(xs: XapiSession, vm: str, device: str) -> Optional[str]:
    """The IPv4 address the guest agent reports for VIF ``device``, if any (never ``0/ip`` blindly)."""
    with xs.doing("reading the guest's network address"):
        metrics = str(xs.api.VM.get_guest_metrics(vm))
        if metrics in (NULL, ""):
            return None
        networks: dict[str, Any] = xs.api.VM_guest_metrics.get_networks(metrics)
    for key in (f"{device}/ipv4/0", f"{device}/ip"):
        value = str(networks.get(key, "")).strip()
        if value and _is_ipv4(value):
            return value
    return None


def has_guest_agent(xs: XapiSession, vm: str) -> bool:
    with xs.doing("reading the guest metrics"):
        return str(xs.api.VM.get_guest_metrics(vm)) not in (NULL, "")


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)


def text_console(xs: XapiSession, vm: str) -> str:
    """The location of the VM's vt100 console."""
    with xs.doing("finding the DDK's text console"):
        for console in xs.api.VM.get_consoles(vm):
            rec = xs.api.console.get_record(console)
            if rec["protocol"] == "vt100":
                return str(rec["location"])
    from ..errors import ConsoleError

    raise ConsoleError(
        f"The DDK VM on {xs.host_label} has no text (vt100) console.",
        "A DDK is a PV guest and should have one; check that the image really is a DDK, or use "
        "vm.first_boot: noninteractive, which needs no console.",
    )
