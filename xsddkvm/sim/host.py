"""The simulated pool: seeded state plus the helpers every simulator module shares.

``SimHost`` seeds a ``SimState`` from a ``Scenario`` (pool, hosts, SR, networks, PIFs, dom0)
and owns sessions, tasks, SR space accounting, VDI files, hotfixes and the guest runtime.
The wire (``api``, ``server``, ``import_xva``, ``console``) and the guests call into it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import threading
import uuid as uuidlib
from pathlib import Path
from typing import Any, Optional

from . import records
from .errors import XapiError
from .scenario import HostSpec, Scenario
from .state import NULL_REF, SimState

GIB = 1024**3
MIB = 1024**2
# Classes whose non-seed objects ``inspect`` reports (what a client may leak).
INSPECTED = (
    "VM", "VDI", "VBD", "VIF", "console", "VM_metrics", "VM_guest_metrics", "task", "session",
    "pool_update",
)  # fmt: skip


class _NoGuests:
    """Temporary stand-in used while ``sim/guest.py`` does not exist yet: VMs change power
    state but no guest boots (no console text, no metrics, no SSH)."""

    ssh_port = 0

    def start(self, vm_ref: str) -> None:
        pass

    def stop(self, vm_ref: str, persist: bool) -> None:
        pass

    def close(self) -> None:
        pass


def _guest_runtime(host: SimHost) -> Any:
    # Imported lazily so the API layer works before guest.py lands (see _NoGuests).
    if importlib.util.find_spec(f"{__package__}.guest") is None:
        return _NoGuests()
    return importlib.import_module(f"{__package__}.guest").GuestRuntime(host)


class SimHost:
    """A simulated pool seeded from ``scenario``; files live under ``data_dir``."""

    def __init__(self, scenario: Scenario, data_dir: Path, port: int) -> None:
        self.scenario = scenario
        self.data_dir = Path(data_dir)
        self.port = port
        self._owns_data_dir = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "vdis").mkdir(exist_ok=True)
        self.state = SimState(self.data_dir)
        self._session_calls: dict[str, int] = {}
        self._destroy_when_done: set[str] = set()
        self._dhcp: dict[str, bool] = {}
        self._hotfixes = 0
        self._closed = threading.Event()
        self.hosts: list[str] = []
        self._seed()
        self._seed_refs = {r for cls in self.state.classes() for r in self.state.refs(cls)}
        self.guests: Any = _guest_runtime(self)

    # -- seeding ----------------------------------------------------------------------------
    def _seed(self) -> None:
        s, st = self.scenario, self.state
        for spec in s.pool.hosts:
            self.hosts.append(self._seed_host(spec))
        self.master = self.hosts[0]
        self.sr = st.create(
            "SR", name_label=s.storage.name, physical_size=s.storage.size_gib * GIB,
            type="ext", content_type="user", other_config={"i18n-key": "local-storage"},
            allowed_operations=["unplug", "plug", "pbd_create", "update", "pbd_destroy",
                                "vdi_resize", "vdi_clone", "scan", "vdi_snapshot",
                                "vdi_create", "vdi_destroy"],
        )  # fmt: skip
        st.create("PBD", host=self.master, SR=self.sr, device_config={"device": "/dev/sda3"})
        for index, net in enumerate(s.networks):
            ref = st.create("network", name_label=net.name, bridge=net.bridge)
            self._dhcp[ref] = net.dhcp
            for host_ref in self.hosts:
                host = st.get("host", host_ref)
                st.create(
                    "PIF", device=f"eth{index}", network=ref, host=host_ref,
                    MAC=_mac(host["uuid"], index), management=net.management,
                    ip_configuration_mode="Static" if net.management else "None",
                    IP=host["address"] if net.management else "",
                    netmask="255.0.0.0" if net.management else "",
                )  # fmt: skip
        st.create(
            "pool", name_label=s.pool.name, master=self.master, default_SR=self.sr,
            suspend_image_SR=self.sr, crash_dump_SR=self.sr,
        )  # fmt: skip
        for host_ref, spec in zip(self.hosts, s.pool.hosts):
            for name in spec.updates:
                self._record_update(host_ref, name)

    def _seed_host(self, spec: HostSpec) -> str:
        st = self.state
        metrics = st.create("host_metrics", memory_total=32 * GIB, memory_free=28 * GIB)
        host = st.create(
            "host", name_label=spec.name, hostname=spec.name, address=spec.address,
            software_version=self._software_version(spec), metrics=metrics, edition="free",
            capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p",
                          "hvm-3.0-x86_64"],
            cpu_info={"cpu_count": "4", "socket_count": "1", "vendor": "GenuineIntel"},
            allowed_operations=["provision", "evacuate", "reboot", "shutdown", "vm_start",
                                "vm_resume", "vm_migrate"],
        )  # fmt: skip
        vm_metrics = st.create("VM_metrics", memory_actual=4 * GIB, VCPUs_number=4)
        dom0 = st.create(
            "VM", name_label=f"Control domain on host: {spec.name}", is_control_domain=True,
            power_state="Running", resident_on=host, domid=0, metrics=vm_metrics,
            memory_static_max=4 * GIB, memory_dynamic_max=4 * GIB, memory_dynamic_min=4 * GIB,
            memory_static_min=4 * GIB, memory_target=4 * GIB, VCPUs_max=4, VCPUs_at_startup=4,
            PV_bootloader="", domain_type="pv",
        )  # fmt: skip
        # ocaml/xapi/create_misc.ml create_domain_zero_console_record: location uses ?ref=
        st.create(
            "console", VM=dom0, protocol="vt100",
            location=f"https://{spec.address}/console?ref={dom0}",
        )  # fmt: skip
        st.update("host", host, control_domain=dom0, resident_VMs=[dom0])
        return host

    @staticmethod
    def _software_version(spec: HostSpec) -> dict[str, str]:
        # Keys: ocaml/xapi/create_misc.ml make_software_version (xenapi.md §8.1).
        short = ".".join(spec.product_version.split(".")[:2])
        return {
            "product_version": spec.product_version, "product_version_text": short,
            "product_version_text_short": short, "platform_name": "XCP",
            "platform_version": "0.0.0", "product_brand": "XenServer",
            "build_number": spec.build_number, "git_id": "0", "hostname": "localhost",
            "date": "2021-11-17", "xapi": spec.xapi, "xapi_build": f"{spec.xapi}.0",
            "xen": spec.xen, "linux": spec.linux, "xencenter_min": "2.16",
            "xencenter_max": "2.16", "network_backend": "openvswitch", "db_schema": "5.603",
        }  # fmt: skip

    # -- pool roles and addresses -----------------------------------------------------------
    def address_of(self, host_ref: str) -> str:
        return str(self.state.get("host", host_ref)["address"])

    def assert_master(self, local_address: str) -> None:
        """Raise HOST_IS_SLAVE for calls that arrive on a supporter's address.

        ocaml/xapi/xapi_session.ml (login) and session_check.ml (every other call).
        """
        for host_ref in self.hosts[1:]:
            if self.address_of(host_ref) == local_address:
                raise XapiError("HOST_IS_SLAVE", self.address_of(self.master))

    def management_network(self) -> str:
        pif = self.state.first("PIF", lambda p: p["management"] and p["host"] == self.master)
        assert pif is not None, "the seed always has a management PIF"
        return str(self.state.get("PIF", pif)["network"])

    def has_dhcp(self, network_ref: str) -> bool:
        return self._dhcp.get(network_ref, False)

    # -- sessions ---------------------------------------------------------------------------
    def login(self, username: str, password: str, originator: str = "") -> str:
        creds = self.scenario.credentials
        if username != creds.username or password != creds.password:
            # ocaml/xapi/xapi_session.ml do_local_auth: [uname; PAM message]. xapi also sleeps
            # 5 s first; the simulator answers at once so tests stay fast.
            raise XapiError("SESSION_AUTHENTICATION_FAILED", username, "Authentication failure")
        return self.state.create(
            "session", this_host=self.master, originator=originator, auth_user_name=username,
            last_active=records.now(), validation_time=records.now(),
        )  # fmt: skip

    def check_session(self, session_ref: str) -> str:
        """The session ref if it is live; counts calls for the session_expiry fault."""
        with self.state.lock:
            if not self.state.exists("session", session_ref):
                raise XapiError("SESSION_INVALID", session_ref)  # ocaml/xapi/session_check.ml
            limit = self.scenario.faults.session_expiry_calls
            if limit is not None:
                calls = self._session_calls.get(session_ref, 0) + 1
                self._session_calls[session_ref] = calls
                if calls > limit:
                    self.logout(session_ref)
                    raise XapiError("SESSION_INVALID", session_ref)
            return session_ref

    def logout(self, session_ref: str) -> None:
        with self.state.lock:
            if not self.state.exists("session", session_ref):
                raise XapiError("SESSION_INVALID", session_ref)
            self._session_calls.pop(session_ref, None)
            self.state.destroy("session", session_ref)

    # -- storage ----------------------------------------------------------------------------
    def default_sr(self) -> str:
        pool = self.state.get("pool", self.state.refs("pool")[0])
        sr = str(pool["default_SR"])
        if not self.state.exists("SR", sr):
            raise XapiError("DEFAULT_SR_NOT_FOUND", sr)
        return sr

    def sr_free(self, sr_ref: str) -> int:
        sr = self.state.get("SR", sr_ref)
        if self.scenario.faults.sr_full:
            return 0
        return max(0, int(sr["physical_size"]) - int(sr["physical_utilisation"]))

    def reserve_space(self, sr_ref: str, nbytes: int) -> None:
        """Charge ``nbytes`` to the SR or raise the ext SM's out-of-space failure."""
        with self.state.lock:
            if nbytes > self.sr_free(sr_ref):
                # SM error 44 (xs-opt/sm XE_SR_ERRORCODES.xml "SRNoSpace"), surfaced by xapi as
                # SR_BACKEND_FAILURE_<code> [""; message; ""].
                raise XapiError("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")
            self._charge(sr_ref, nbytes)

    def release_space(self, sr_ref: str, nbytes: int) -> None:
        with self.state.lock:
            if self.state.exists("SR", sr_ref):
                self._charge(sr_ref, -nbytes)

    def _charge(self, sr_ref: str, nbytes: int) -> None:
        sr = self.state.get("SR", sr_ref)
        self.state.update(
            "SR", sr_ref,
            physical_utilisation=max(0, int(sr["physical_utilisation"]) + nbytes),
            virtual_allocation=max(0, int(sr["virtual_allocation"]) + nbytes),
        )  # fmt: skip

    def vdi_path(self, vdi_ref: str) -> Path:
        return self.data_dir / "vdis" / str(self.state.get("VDI", vdi_ref)["uuid"])

    def create_vdi(self, sr_ref: str, virtual_size: int, **fields: Any) -> str:
        """Charge the SR, create the VDI record and its sparse file of ``virtual_size`` bytes."""
        with self.state.lock:
            self.state.get("SR", sr_ref)
            self.reserve_space(sr_ref, virtual_size)
            vdi_uuid = str(uuidlib.uuid4())
            ref = self.state.create(
                "VDI", uuid=vdi_uuid, SR=sr_ref, virtual_size=virtual_size,
                physical_utilisation=virtual_size, location=vdi_uuid, **fields,
            )  # fmt: skip
        with open(self.vdi_path(ref), "wb") as f:
            f.truncate(virtual_size)
        return ref

    def copy_vdi(self, vdi_ref: str, sr_ref: str) -> str:
        """A new VDI on ``sr_ref`` holding the same bytes, copied sparsely (holes stay holes)."""
        vdi = self.state.get("VDI", vdi_ref)
        keep = ("name_label", "name_description", "type", "sharable", "read_only",
                "other_config", "sm_config")  # fmt: skip
        new = self.create_vdi(sr_ref, int(vdi["virtual_size"]), **{k: vdi[k] for k in keep})
        _sparse_copy(self.vdi_path(vdi_ref), self.vdi_path(new))
        return new

    def destroy_vdi(self, vdi_ref: str) -> None:
        """Remove the VDI record and its file and give its space back (no VBD checks)."""
        with self.state.lock:
            vdi = self.state.get("VDI", vdi_ref)
            path = self.vdi_path(vdi_ref)
            self.release_space(vdi["SR"], int(vdi["physical_utilisation"]))
            self.state.destroy("VDI", vdi_ref)
        path.unlink(missing_ok=True)

    # -- tasks ------------------------------------------------------------------------------
    def create_task(
        self, label: str, description: str = "", session_ref: Optional[str] = None
    ) -> str:
        # ocaml/xapi/taskHelper.ml make: pending, progress 0, type "<none/>", cancellable.
        with self.state.lock:
            ref = self.state.create(
                "task", name_label=label, name_description=description, resident_on=self.master,
                created=records.now(),
            )  # fmt: skip
            if session_ref and self.state.exists("session", session_ref):
                self.state.get("session", session_ref)["tasks"].append(ref)
                self.state.touch("session", session_ref)
            return ref

    def set_task_progress(self, task_ref: str, fraction: float) -> None:
        with self.state.lock:
            if self._pending(task_ref):
                self.state.update("task", task_ref, progress=float(fraction))

    def complete_task(self, task_ref: str, result_xml: str) -> None:
        """Finish with ``result`` = the XML-RPC text of the return value (xenapi.md §2.3)."""
        self._finish(task_ref, status="success", result=result_xml)

    def fail_task(self, task_ref: str, error: XapiError) -> None:
        # ocaml/xapi/taskHelper.ml failed: cancelled when the code is TASK_CANCELLED.
        status = "cancelled" if error.code == "TASK_CANCELLED" else "failure"
        self._finish(task_ref, status=status, error_info=error.description)

    def cancel_task(self, task_ref: str) -> None:
        """Cancel a pending task; the work in progress sees it through ``task_cancelled``."""
        self.fail_task(task_ref, XapiError("TASK_CANCELLED", task_ref))

    def task_cancelled(self, task_ref: str) -> bool:
        with self.state.lock:
            return not self.state.exists("task", task_ref) or (
                self.state.get("task", task_ref)["status"] == "cancelled"
            )

    def destroy_task(self, task_ref: str) -> None:
        with self.state.lock:
            if self._pending(task_ref):
                # ocaml/xapi/xapi_task.ml destroy: a pending task is only marked.
                self.state.update("task", task_ref, current_operations={"task": "destroy"})
                self._destroy_when_done.add(task_ref)
                return
            self._drop_task(task_ref)

    def _pending(self, task_ref: str) -> bool:
        return bool(self.state.get("task", task_ref)["status"] == "pending")

    def _finish(self, task_ref: str, **fields: Any) -> None:
        with self.state.lock:
            if not self.state.exists("task", task_ref) or not self._pending(task_ref):
                return  # cancelled or destroyed meanwhile: the first outcome stands
            self.state.update(
                "task", task_ref, progress=1.0, finished=records.now(), allowed_operations=[],
                **fields,
            )  # fmt: skip
            if task_ref in self._destroy_when_done:
                self._drop_task(task_ref)

    def _drop_task(self, task_ref: str) -> None:
        self._destroy_when_done.discard(task_ref)
        for session in self.state.find("session", lambda s: task_ref in s["tasks"]):
            self.state.get("session", session)["tasks"].remove(task_ref)
            self.state.touch("session", session)
        self.state.destroy("task", task_ref)

    # -- updates and hotfixes ---------------------------------------------------------------
    def apply_hotfix(
        self,
        host_ref: Optional[str] = None,
        build_number: Optional[str] = None,
        linux: Optional[str] = None,
        update_name: Optional[str] = None,
    ) -> str:
        """Simulate installing a hotfix: new build/kernel and an applied pool_update."""
        with self.state.lock:
            host_ref = host_ref or self.master
            host = self.state.get("host", host_ref)
            version = dict(host["software_version"])
            if build_number is not None:
                version["build_number"] = build_number
            if linux is not None:
                version["linux"] = linux
            self._hotfixes += 1
            name = (
                update_name
                or f"XS{version['product_version'].replace('.', '')}E{self._hotfixes:03d}"
            )
            self.state.update("host", host_ref, software_version=version)
            return self._record_update(host_ref, name)

    def _record_update(self, host_ref: str, name: str) -> str:
        """Mark the pool_update called ``name`` (created if needed) as applied on the host."""
        ref = self.state.first("pool_update", lambda u: u["name_label"] == name)
        if ref is None:
            ref = self.state.create(
                "pool_update", name_label=name, version="1.0",
                after_apply_guidance=["restartHost"],
            )  # fmt: skip
        self.mark_update_applied(ref, host_ref)
        return ref

    def mark_update_applied(self, update_ref: str, host_ref: str) -> None:
        with self.state.lock:
            update = self.state.get("pool_update", update_ref)
            host = self.state.get("host", host_ref)
            if host_ref not in update["hosts"]:
                update["hosts"].append(host_ref)
                self.state.touch("pool_update", update_ref)
            if update_ref not in host["updates"]:
                host["updates"].append(update_ref)
                self.state.touch("host", host_ref)

    # -- introspection and teardown ---------------------------------------------------------
    def inspect(self) -> dict[str, list[dict[str, Any]]]:
        """Every object created since seeding, per class (empty lists when nothing leaked)."""
        found: dict[str, list[dict[str, Any]]] = {}
        with self.state.lock:
            for cls in INSPECTED:
                found[cls] = []
                for ref, rec in self.state.all(cls).items():
                    if ref in self._seed_refs or rec.get("is_control_domain"):
                        continue
                    keep = ("uuid", "name_label", "power_state", "is_a_template",
                            "other_config", "status", "SR", "VM", "VDI", "device")  # fmt: skip
                    found[cls].append({"ref": ref, **{k: rec[k] for k in keep if k in rec}})
        return found

    def close(self) -> None:
        """Stop every guest and remove the files this host created. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.guests.close()
        target = self.data_dir if self._owns_data_dir else self.data_dir / "vdis"
        shutil.rmtree(target, ignore_errors=True)


def _sparse_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        size, offset = os.fstat(fin.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole is left
                break
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            while start < end:
                chunk = fin.read(min(MIB, end - start))
                if not chunk:
                    break
                fout.write(chunk)
                start += len(chunk)
            offset = end


def _mac(seed: str, index: int) -> str:
    digits = uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"{seed}/{index}").hex
    return "00:16:3e:" + ":".join(digits[i : i + 2] for i in (0, 2, 4))


__all__ = ["GIB", "NULL_REF", "SimHost"]
