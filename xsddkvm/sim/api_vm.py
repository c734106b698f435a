"""VM messages: the power-state machine, create/clone/copy/provision/destroy, memory and VCPUs.

Rules: ocaml/xapi/xapi_vm_lifecycle.ml (allowed_power_states, check_operation_error,
report_power_state_error, update_allowed_operations), xapi_vm_helpers.ml (destroy),
xapi_vm_clone.ml, xapi_templates.ml (provision); xapi-records.md §3.3 and §4.
Operations fail fast with OTHER_OPERATION_IN_PROGRESS where xapi would block and retry.
"""

from __future__ import annotations

import copy
import itertools
import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import records
from .api_devices import gen_mac
from .api_generic import as_bool, as_int, check_ref, construct
from .errors import XapiError, bad_power_state
from .state import NULL_REF, new_ref

if TYPE_CHECKING:
    from .host import SimHost

# Allowed power states per operation, in the order xapi prints them (§4.2).
POWER: dict[str, tuple[str, ...]] = {
    "start": ("Halted",), "clean_shutdown": ("Running",),
    "hard_shutdown": ("Paused", "Suspended", "Running"), "clean_reboot": ("Running",),
    "hard_reboot": ("Paused", "Running"), "clone": ("Halted",), "copy": ("Halted",),
    "provision": ("Halted",), "make_into_template": ("Halted",), "destroy": ("Halted", "Suspended"),
    "changing_static_range": ("Halted",), "changing_memory_limits": ("Halted",),
    "changing_VCPUs": ("Halted",), "changing_dynamic_range": ("Halted", "Running"),
}  # fmt: skip
# Operations a template allows (check_operation_error, step 4).
TEMPLATE_OK = {
    "changing_dynamic_range", "changing_static_range", "changing_memory_limits",
    "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy", "export",
    "metadata_export", "provision",
}  # fmt: skip
# allowed_operations per power state (xapi-records.md §4.4).
BY_STATE = {
    "Halted": ["changing_dynamic_range", "changing_shadow_memory", "changing_static_range",
               "make_into_template", "migrate_send", "destroy", "export", "start_on", "start",
               "clone", "copy", "snapshot", "changing_NVRAM", "metadata_export", "create_vtpm"],
    "Running": ["changing_dynamic_range", "migrate_send", "pool_migrate", "changing_VCPUs_live",
                "suspend", "hard_reboot", "hard_shutdown", "clean_reboot", "clean_shutdown",
                "pause", "checkpoint", "snapshot", "metadata_export", "sysprep"],
    "Paused": ["hard_shutdown", "hard_reboot", "unpause", "snapshot", "checkpoint"],
    "Suspended": ["hard_shutdown", "destroy", "resume", "resume_on", "snapshot", "export",
                  "migrate_send"],
}  # fmt: skip
TEMPLATE_OPS = ["changing_dynamic_range", "changing_static_range", "changing_shadow_memory",
                "changing_NVRAM", "clone", "copy", "export", "metadata_export"]  # fmt: skip
VM_REQUIRED = (
    "user_version", "is_a_template", "affinity", "memory_static_max", "memory_dynamic_max",
    "memory_dynamic_min", "memory_static_min", "VCPUs_params", "VCPUs_max", "VCPUs_at_startup",
    "actions_after_shutdown", "actions_after_reboot", "actions_after_crash", "PV_bootloader",
    "PV_kernel", "PV_ramdisk", "PV_args", "PV_bootloader_args", "PV_legacy_args",
    "HVM_boot_policy", "HVM_boot_params", "platform", "PCI_bus", "other_config",
    "recommendations",
)  # fmt: skip
VM_OPTIONAL = (
    "name_label", "name_description", "memory_target", "actions_after_softreboot",
    "HVM_shadow_multiplier", "xenstore_data", "ha_always_run", "ha_restart_priority", "tags",
    "blocked_operations", "start_delay", "shutdown_delay", "order", "suspend_SR",
    "hardware_platform_version", "has_vendor_device", "reference_label", "domain_type", "NVRAM",
)  # fmt: skip


def allowed_operations(vm: dict[str, Any]) -> list[str]:
    if vm["is_control_domain"]:
        return []
    if vm["is_a_template"]:
        ops = list(TEMPLATE_OPS)
        if not vm["is_default_template"]:
            ops += ["provision", "destroy"]
    else:
        ops = list(BY_STATE.get(vm["power_state"], []))
    return [op for op in ops if op not in vm["blocked_operations"]]


class VmMessages:
    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.state = host.state
        self._domids = itertools.count(1)

    def messages(self) -> dict[str, Callable[..., Any]]:
        return {
            "VM.create": self.create, "VM.start": self.start,
            "VM.clean_shutdown": self.clean_shutdown, "VM.hard_shutdown": self.hard_shutdown,
            "VM.clean_reboot": self.clean_reboot, "VM.hard_reboot": self.hard_reboot,
            "VM.destroy": self.destroy, "VM.clone": self.clone, "VM.copy": self.copy,
            "VM.provision": self.provision, "VM.set_is_a_template": self.set_is_a_template,
            "VM.power_state_reset": self.power_state_reset,
            "VM.get_allowed_VIF_devices": self.allowed_vif_devices,
            "VM.get_allowed_VBD_devices": self.allowed_vbd_devices,
            "VM.set_memory_limits": self.set_memory_limits, "VM.set_memory": self.set_memory,
            "VM.set_memory_static_range": self.set_memory_static_range,
            "VM.set_memory_dynamic_range": self.set_memory_dynamic_range,
            "VM.set_memory_static_max": lambda s, v: self._memory(s, smax=v),
            "VM.set_memory_static_min": lambda s, v: self._memory(s, smin=v),
            "VM.set_memory_dynamic_max": lambda s, v: self._memory(s, dmax=v),
            "VM.set_memory_dynamic_min": lambda s, v: self._memory(s, dmin=v),
            "VM.set_VCPUs_max": lambda s, v: self._vcpus(s, "VCPUs_max", v),
            "VM.set_VCPUs_at_startup": lambda s, v: self._vcpus(s, "VCPUs_at_startup", v),
        }  # fmt: skip

    # -- admission --------------------------------------------------------------------------
    def _admit(self, vm_ref: str, op: str) -> dict[str, Any]:
        """The VM record if ``op`` may run now, else the first failing check (§4.1)."""
        vm = self.state.get("VM", vm_ref)
        if op in vm["blocked_operations"]:
            raise XapiError("OPERATION_BLOCKED", vm_ref, vm["blocked_operations"][op])
        allowed = POWER.get(op)
        if allowed and vm["power_state"] not in allowed:
            raise bad_power_state(vm_ref, [s.lower() for s in allowed], vm["power_state"])
        for task, running in vm["current_operations"].items():
            raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref, running, task)
        if vm["is_a_template"] and op not in TEMPLATE_OK:
            if not (op == "destroy" and not vm["is_default_template"]):
                raise XapiError("VM_IS_TEMPLATE", vm_ref, op)
        if op == "provision" and not vm["is_a_template"]:
            raise XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
        if vm["is_control_domain"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        return vm

    def _refresh(self, vm_ref: str, **fields: Any) -> None:
        vm = self.state.get("VM", vm_ref)
        vm.update(fields)
        self.state.update("VM", vm_ref, allowed_operations=allowed_operations(vm))

    def _guest_op(self, vm_ref: str, op: str, work: Callable[[], None]) -> None:
        """Run ``work`` (guest calls, outside the lock) with ``op`` in current_operations."""
        token = new_ref()
        with self.state.lock:
            self._admit(vm_ref, op)
            self._refresh(vm_ref, current_operations={token: op})
        try:
            work()
        finally:
            with self.state.lock:
                self._refresh(vm_ref, current_operations={})

    # -- power ------------------------------------------------------------------------------
    def create(self, args: Any) -> str:
        fields = construct("VM", args, VM_REQUIRED, VM_OPTIONAL)
        # ocaml/xapi/xapi_vm.ml create: a random mac_seed unless one is given.
        fields["other_config"].setdefault("mac_seed", str(uuidlib.uuid4()))
        with self.state.lock:
            metrics = self.state.create("VM_metrics")
            ref = self.state.create("VM", metrics=metrics, power_state="Halted", **fields)
            self._refresh(ref)
            return ref

    def start(self, vm: str, start_paused: Any = False, force: Any = False) -> str:
        paused, _ = as_bool("start_paused", start_paused), as_bool("force", force)
        with self.state.lock:
            self._admit(vm, "start")
            self._boot(vm, "Paused" if paused else "Running")
        if not paused:
            self.host.guests.start(vm)
        return ""

    def _boot(self, vm_ref: str, power_state: str) -> None:
        vm = self.state.get("VM", vm_ref)
        host = self.host.master
        console_uuid = str(uuidlib.uuid4())
        # ocaml/xapi/xapi_xenops.ml: location = https://<host address>/console?uuid=<uuid>
        self.state.create(
            "console", uuid=console_uuid, VM=vm_ref, protocol="vt100",
            location=f"https://{self.host.address_of(host)}/console?uuid={console_uuid}",
        )  # fmt: skip
        for index, vbd in enumerate(vm["VBDs"]):
            device = f"xvd{chr(ord('a') + index)}"
            self.state.update("VBD", vbd, currently_attached=True, device=device)
        for vif in vm["VIFs"]:
            self.state.update("VIF", vif, currently_attached=True)
        if self.state.exists("VM_metrics", vm["metrics"]):
            self.state.update(
                "VM_metrics", vm["metrics"], start_time=records.now(),
                VCPUs_number=vm["VCPUs_at_startup"], memory_actual=vm["memory_dynamic_max"],
            )  # fmt: skip
        self.state.get("host", host)["resident_VMs"].append(vm_ref)
        self.state.touch("host", host)
        self._refresh(
            vm_ref, power_state=power_state, resident_on=host, domid=next(self._domids),
            memory_target=vm["memory_dynamic_max"],
        )  # fmt: skip

    def _halt(self, vm_ref: str) -> None:
        vm = self.state.get("VM", vm_ref)
        for console in list(vm["consoles"]):
            self.state.destroy("console", console)
        if self.state.exists("VM_guest_metrics", vm["guest_metrics"]):
            self.state.destroy("VM_guest_metrics", vm["guest_metrics"])
        for vbd in vm["VBDs"]:
            self.state.update("VBD", vbd, currently_attached=False, device="")
        for vif in vm["VIFs"]:
            self.state.update("VIF", vif, currently_attached=False)
        if self.state.exists("VM_metrics", vm["metrics"]):
            self.state.update("VM_metrics", vm["metrics"], VCPUs_number=0, memory_actual=0)
        host = vm["resident_on"]
        if (
            self.state.exists("host", host)
            and vm_ref in self.state.get("host", host)["resident_VMs"]
        ):
            self.state.get("host", host)["resident_VMs"].remove(vm_ref)
            self.state.touch("host", host)
        self._refresh(
            vm_ref, power_state="Halted", resident_on=NULL_REF, domid=-1, memory_target=0,
            guest_metrics=NULL_REF,
        )  # fmt: skip

    def _shutdown(self, vm: str, op: str, persist: bool) -> str:
        self._guest_op(vm, op, lambda: self.host.guests.stop(vm, persist))
        with self.state.lock:
            self._halt(vm)
        return ""

    def clean_shutdown(self, vm: str) -> str:
        return self._shutdown(vm, "clean_shutdown", persist=True)

    def hard_shutdown(self, vm: str) -> str:
        return self._shutdown(vm, "hard_shutdown", persist=False)

    def _reboot(self, vm: str, op: str, persist: bool) -> str:
        self._guest_op(vm, op, lambda: self.host.guests.stop(vm, persist))
        with self.state.lock:
            self._halt(vm)
            self._boot(vm, "Running")
        self.host.guests.start(vm)
        return ""

    def clean_reboot(self, vm: str) -> str:
        return self._reboot(vm, "clean_reboot", persist=True)

    def hard_reboot(self, vm: str) -> str:
        return self._reboot(vm, "hard_reboot", persist=False)

    def power_state_reset(self, vm: str) -> str:
        self.state.get("VM", vm)
        self.host.guests.stop(vm, False)
        with self.state.lock:
            self._halt(vm)
        return ""

    # -- create / copy / destroy ------------------------------------------------------------
    def destroy(self, self_: str) -> str:
        with self.state.lock:
            vm = self._admit(self_, "destroy")
            for vbd in list(vm["VBDs"]):
                self.state.destroy("VBD", vbd)
            for vif in list(vm["VIFs"]):
                self.state.destroy("VIF", vif)
            for console in list(vm["consoles"]):
                self.state.destroy("console", console)
            for cls in ("VM_metrics", "VM_guest_metrics"):
                ref = vm["metrics" if cls == "VM_metrics" else "guest_metrics"]
                if self.state.exists(cls, ref):
                    self.state.destroy(cls, ref)
            self.state.destroy("VM", self_)
        return ""

    def clone(self, vm: str, new_name: str) -> str:
        return self._copy_vm(vm, str(new_name), "clone", None)

    def copy(self, vm: str, new_name: str, sr: str) -> str:
        if sr != NULL_REF:
            check_ref(self.state, "SR", sr)
        return self._copy_vm(vm, str(new_name), "copy", None if sr == NULL_REF else sr)

    def _copy_vm(self, vm_ref: str, name: str, op: str, sr: Optional[str]) -> str:
        created: list[str] = []
        with self.state.lock:
            vm = copy.deepcopy(self._admit(vm_ref, op))
            try:
                return self._copy_locked(vm, name, sr, created)
            except BaseException:
                for vdi in created:
                    self.host.destroy_vdi(vdi)
                raise

    def _copy_locked(
        self, vm: dict[str, Any], name: str, sr: Optional[str], created: list[str]
    ) -> str:
        # The copy gets a fresh mac_seed so its VIF MACs differ from the source's.
        seed = str(uuidlib.uuid4())
        disks: dict[str, str] = {}
        for vbd in vm["VBDs"]:
            rec = self.state.get("VBD", vbd)
            if rec["type"] == "Disk" and self.state.exists("VDI", rec["VDI"]):
                target = sr or self.state.get("VDI", rec["VDI"])["SR"]
                disks[vbd] = self.host.copy_vdi(rec["VDI"], target)
                created.append(disks[vbd])
        skip = {"uuid", "consoles", "VIFs", "VBDs", "metrics", "guest_metrics", "snapshots",
                "children", "current_operations", "allowed_operations", "resident_on"}  # fmt: skip
        fields = {k: v for k, v in vm.items() if k not in skip}
        fields.update(
            name_label=name, is_default_template=False, power_state="Halted", domid=-1,
            other_config={**vm["other_config"], "mac_seed": seed},
            metrics=self.state.create("VM_metrics"),
        )  # fmt: skip
        new = self.state.create("VM", **fields)
        for vbd in vm["VBDs"]:
            rec = copy.deepcopy(self.state.get("VBD", vbd))
            for key in ("uuid", "VM", "device", "currently_attached", "VDI"):
                rec.pop(key)
            self.state.create(
                "VBD", VM=new, VDI=disks.get(vbd, self.state.get("VBD", vbd)["VDI"]), **rec
            )
        for vif in vm["VIFs"]:
            rec = copy.deepcopy(self.state.get("VIF", vif))
            for key in ("uuid", "VM", "MAC", "currently_attached", "MAC_autogenerated"):
                rec.pop(key)
            mac = gen_mac(int(rec["device"]), seed)
            self.state.create("VIF", VM=new, MAC=mac, MAC_autogenerated=True, **rec)
        self._refresh(new)
        return new

    def provision(self, vm: str) -> str:
        with self.state.lock:
            rec = self.state.get("VM", vm)
            if not rec["is_a_template"]:
                raise XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
            rec = self._admit(vm, "provision")
            spec = rec["other_config"].get("disks")
            if not spec:
                return ""
            try:
                disks = ET.fromstring(spec).findall("disk")
            except ET.ParseError as exc:
                raise XapiError("INVALID_VALUE", "disks", str(exc)) from None
            for disk in disks:
                sr_uuid = disk.get("sr", "")
                sr = self.state.by_uuid("SR", sr_uuid) if sr_uuid else self.host.default_sr()
                device = disk.get("device", "0")
                vdi = self.host.create_vdi(
                    sr, as_int("size", disk.get("size", "0")), type=disk.get("type", "system"),
                    name_label=f"{rec['name_label']} {device}",
                )  # fmt: skip
                self.state.create(
                    "VBD", VM=vm, VDI=vdi, userdevice=device, mode="RW", type="Disk",
                    bootable=disk.get("bootable", "false") == "true", other_config={"owner": ""},
                )  # fmt: skip
            # ocaml/xapi/xapi_templates.ml: the disks key is consumed by provisioning.
            other = dict(rec["other_config"])
            other.pop("disks")
            self.state.update("VM", vm, other_config=other)
        return ""

    def set_is_a_template(self, self_: str, value: Any) -> str:
        flag = as_bool("value", value)
        with self.state.lock:
            if flag:
                self._admit(self_, "make_into_template")
            self._refresh(self_, is_a_template=flag)
        return ""

    def allowed_vif_devices(self, vm: str) -> list[str]:
        used = {self.state.get("VIF", v)["device"] for v in self.state.get("VM", vm)["VIFs"]}
        return [str(i) for i in range(7) if str(i) not in used]

    def allowed_vbd_devices(self, vm: str) -> list[str]:
        vbds = self.state.get("VM", vm)["VBDs"]
        used = {self.state.get("VBD", v)["userdevice"] for v in vbds}
        return [str(i) for i in range(16) if str(i) not in used]

    # -- memory and VCPUs -------------------------------------------------------------------
    def set_memory_limits(self, self_: str, smin: Any, smax: Any, dmin: Any, dmax: Any) -> str:
        return self._memory(self_, "changing_memory_limits", smin, smax, dmin, dmax)

    def set_memory(self, self_: str, value: Any) -> str:
        return self._memory(self_, "changing_memory_limits", None, value, value, value)

    def set_memory_static_range(self, self_: str, smin: Any, smax: Any) -> str:
        return self._memory(self_, "changing_static_range", smin, smax)

    def set_memory_dynamic_range(self, self_: str, dmin: Any, dmax: Any) -> str:
        return self._memory(self_, "changing_dynamic_range", dmin=dmin, dmax=dmax)

    def _memory(
        self, vm: str, op: str = "changing_static_range", smin: Any = None, smax: Any = None,
        dmin: Any = None, dmax: Any = None,
    ) -> str:  # fmt: skip
        if op == "changing_static_range" and smin is None and smax is None:
            op = "changing_dynamic_range"
        with self.state.lock:
            rec = self._admit(vm, op)
            names = ("memory_static_min", "memory_static_max", "memory_dynamic_min",
                     "memory_dynamic_max")  # fmt: skip
            given = (smin, smax, dmin, dmax)
            values = {n: int(rec[n]) if v is None else as_int(n, v) for n, v in zip(names, given)}
            a, d, b, c = (values[n] for n in names)
            # ocaml/xapi/xapi_vm_memory_constraints.ml: static_min <= dyn_min <= dyn_max <= static_max
            if not a <= b <= c <= d:
                raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER")
            self.state.update("VM", vm, **values)
        return ""

    def _vcpus(self, vm: str, field: str, value: Any) -> str:
        number = as_int("value", value)
        with self.state.lock:
            rec = self._admit(vm, "changing_VCPUs")
            values = {
                "VCPUs_max": int(rec["VCPUs_max"]),
                "VCPUs_at_startup": int(rec["VCPUs_at_startup"]),
            }
            values[field] = number
            if not 0 < values["VCPUs_at_startup"] <= values["VCPUs_max"]:
                # ocaml/xapi/xapi_vm.ml validate_VCPUs
                raise XapiError(
                    "INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max",
                    str(number),
                )  # fmt: skip
            self.state.update("VM", vm, **{field: number})
        return ""
