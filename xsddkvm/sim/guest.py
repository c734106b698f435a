"""Running simulated guests: boot from the root VDI into a sandbox, IP, metrics, console, sshd.

``GuestRuntime`` is owned by ``SimHost``; the API layer calls ``start`` when a VM starts and
``stop`` when it halts (``persist=True`` for a clean shutdown, which writes the sandbox back).
Guest metrics follow shared/reference/xapi-records.md §2.11 (``ocaml/xapi/xapi_guest_agent.ml``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import paramiko

from . import console_wording, guest_disk, records
from .console import Console
from .errors import XapiError
from .sandbox import Sandbox
from .sshd import GuestSSHServer
from .state import NULL_REF
from .terminal import Terminal

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Guest:
    vm: str
    sandbox: Sandbox
    console: Console
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: Optional[threading.Thread] = None
    vdi: Optional[str] = None  # set once the disk was unpacked: only then is it written back
    ips: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (VIF device, IP)
    sshd: Optional[GuestSSHServer] = None
    metrics: Optional[str] = None
    facts: dict[str, str] = dataclasses.field(default_factory=dict)  # for console and metrics


class GuestRuntime:
    """Every running guest of one simulated host (see the module docstring)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.notes: list[str] = []  # things a user should know, e.g. a disk too small to persist
        self._guests: dict[str, _Guest] = {}
        self._lock = threading.Lock()
        self._prefix = random.randint(100, 250)
        self._used_ips: set[str] = set()
        self._next_ip = 0
        self.ssh_port = self._choose_port(host.scenario.guest.ssh_port)

    # -- public -----------------------------------------------------------------------------
    def start(self, vm_ref: str) -> None:
        """Begin booting ``vm_ref``; returns at once (the guest comes up in the background)."""
        uuid = self.host.state.get("VM", vm_ref)["uuid"]
        noise = random.Random() if self.host.scenario.faults.console_noise else None
        data = Path(self.host.data_dir)
        guest = _Guest(
            vm=vm_ref,
            sandbox=Sandbox(data / "guests" / uuid, data / "simbin" / uuid),
            console=Console(noise),
        )
        with self._lock:
            if vm_ref in self._guests:
                raise RuntimeError(f"guest {vm_ref} is already running")
            self._guests[vm_ref] = guest
        guest.thread = threading.Thread(
            target=self._boot, args=(guest,), name=f"boot-{uuid[:8]}", daemon=True
        )
        guest.thread.start()

    def stop(self, vm_ref: str, persist: bool) -> None:
        """Power off: sshd, console, metrics and IPs go; the disk is written back if ``persist``."""
        with self._lock:
            guest = self._guests.pop(vm_ref, None)
        if guest is None:
            return
        state = self.host.state
        disk: Optional[tuple[Path, int]] = None
        # state.lock before guest.lock, the order the boot thread uses
        with state.lock, guest.lock:
            guest.stopping.set()
            guest.sandbox.kill_all()
            if guest.sshd is not None:
                guest.sshd.stop()
            guest.console.close()
            self._remove_metrics(guest)
            with self._lock:
                self._used_ips.difference_update(ip for _, ip in guest.ips)
            if persist and guest.vdi is not None and state.exists("VDI", guest.vdi):
                disk = (self.host.vdi_path(guest.vdi), state.get("VDI", guest.vdi)["virtual_size"])
        if disk is not None:
            try:
                guest_disk.persist(guest.sandbox.root, *disk)
            except (guest_disk.DiskError, OSError) as exc:
                self._note(f"VM {vm_ref}: kept the previous disk contents: {exc}")
        shutil.rmtree(guest.sandbox.root, ignore_errors=True)
        shutil.rmtree(guest.sandbox.simbin, ignore_errors=True)
        if guest.thread is not None:
            guest.thread.join(timeout=10)

    def close(self) -> None:
        """Stop every guest without writing disks back (the host lost power)."""
        with self._lock:
            running = list(self._guests)
        for vm_ref in running:
            self.stop(vm_ref, persist=False)

    def ip_of(self, vm_ref: str) -> Optional[str]:
        guest = self._guests.get(vm_ref)
        return guest.ips[0][1] if guest is not None and guest.ips else None

    def sandbox_of(self, vm_ref: str) -> Optional[Path]:
        guest = self._guests.get(vm_ref)
        return guest.sandbox.root if guest is not None else None

    def console_of(self, vm_ref: str) -> Optional[Console]:
        guest = self._guests.get(vm_ref)
        return guest.console if guest is not None else None

    def sshd_of(self, vm_ref: str) -> Optional[GuestSSHServer]:
        guest = self._guests.get(vm_ref)
        return guest.sshd if guest is not None else None

    # -- boot -------------------------------------------------------------------------------
    def _boot(self, guest: _Guest) -> None:
        try:
            self._boot_steps(guest)
        except Exception:  # a bug here must not vanish with the thread
            log.exception("guest %s failed to boot", guest.vm)
            guest.console.write("\r\nKernel panic - not syncing: simulator error\r\n")

    def _boot_steps(self, guest: _Guest) -> None:
        state, scenario = self.host.state, self.host.scenario
        with state.lock:
            vdi = _root_vdi(state, guest.vm)
            vdi_file = self.host.vdi_path(vdi) if vdi else None
            pv_args = state.get("VM", guest.vm).get("PV_args", "")
        with guest.lock:
            if guest.stopping.is_set():
                return
            try:
                if vdi_file is None:
                    raise guest_disk.DiskError("VFS: Cannot open root device xvda1")
                shutil.rmtree(guest.sandbox.root, ignore_errors=True)  # left by a crash
                guest_disk.extract(vdi_file, guest.sandbox.root)
            except guest_disk.DiskError as exc:
                Terminal(guest.sandbox, "xs7", guest.console.write, {}).panic(str(exc))
                return
            guest.vdi = vdi
            guest.sandbox.prepare(make_fails=bool(scenario.faults.make_fails))
            guest.facts = _facts(guest.sandbox, pv_args)
            variant = console_wording.variant_for(guest.sandbox)
            terminal = Terminal(guest.sandbox, variant, guest.console.write, guest.facts)
            guest.console.terminal = terminal
            terminal.boot()
            host_key = guest_disk.host_key(guest.sandbox.root)  # made on first boot
        delay = float(scenario.guest.boot_seconds) + float(scenario.faults.slow_boot_seconds or 0)
        if guest.stopping.wait(delay):
            return
        late = float(scenario.faults.late_ip_seconds or 0)
        with state.lock, guest.lock:
            if guest.stopping.is_set():
                return
            self._network_up(guest, host_key, publish_ips=not late)
        with guest.lock, guest.console.input_lock:
            if guest.stopping.is_set():  # stop() may already have removed the sandbox
                return
            terminal.ready()
        if late and not guest.stopping.wait(late):
            with state.lock, guest.lock:
                if not guest.stopping.is_set() and guest.metrics is not None:
                    state.update("VM_guest_metrics", guest.metrics, networks=_networks(guest))

    def _network_up(self, guest: _Guest, host_key: paramiko.PKey, publish_ips: bool) -> None:
        """DHCP leases for the VM's VIFs, sshd on the first one, then the guest agent's report."""
        state, faults = self.host.state, self.host.scenario.faults
        vifs = [state.get("VIF", ref) for ref in state.get("VM", guest.vm)["VIFs"]]
        for vif in sorted(vifs, key=lambda v: int(v["device"])):
            if not self.host.has_dhcp(vif["network"]):
                continue
            ip, listener = self._allocate_ip()
            if guest.sshd is None:
                guest.sshd = GuestSSHServer(
                    listener, host_key, guest.sandbox, int(faults.ssh_drops or 0)
                )
                guest.sshd.start()
            else:
                listener.close()
            guest.ips.append((vif["device"], ip))  # only once sshd listens: ip_of() means "up"
        # What the guest's own `hostname -I` shows (ddk_files' hostname reads it): the console
        # knows the address even when no guest agent reports it.
        addresses = guest.sandbox.resolve("/etc/xsddkvm-sim/addresses")
        addresses.parent.mkdir(parents=True, exist_ok=True)
        addresses.write_text("".join(f"{ip}\n" for _, ip in guest.ips))
        if faults.no_guest_tools:
            return
        guest.metrics = state.create(
            "VM_guest_metrics",
            os_version=_os_version(guest.facts),
            PV_drivers_version=_pv_drivers_version(guest.sandbox),
            networks=_networks(guest) if publish_ips else {},
            other={
                "feature-shutdown": "1",
                "feature-poweroff": "1",
                "feature-reboot": "1",
                "feature-suspend": "1",
                "feature-balloon": "1",
                "has-vendor-device": "0",
            },
            last_updated=records.now(),
            live=True,
        )
        state.update("VM", guest.vm, guest_metrics=guest.metrics)

    def _remove_metrics(self, guest: _Guest) -> None:
        state = self.host.state
        _ignore_gone(lambda: state.update("VM", guest.vm, guest_metrics=NULL_REF))
        if guest.metrics is not None:
            metrics = guest.metrics
            _ignore_gone(lambda: state.destroy("VM_guest_metrics", metrics))
        guest.metrics = None

    # -- addresses --------------------------------------------------------------------------
    def _choose_port(self, wanted: Any) -> int:
        if str(wanted) != "auto":
            return int(wanted)
        probe = socket.socket()
        try:
            probe.bind((f"127.{self._prefix}.0.1", 22))
            return 22
        except OSError:
            probe.close()
            probe = socket.socket()
            probe.bind((f"127.{self._prefix}.0.1", 0))
            return int(probe.getsockname()[1])
        finally:
            probe.close()

    def _allocate_ip(self) -> tuple[str, socket.socket]:
        """A free 127.<prefix>.x.y, proven by binding the SSH port on it (socket returned)."""
        with self._lock:
            for _ in range(1000):
                self._next_ip += 1
                high, low = divmod(self._next_ip, 254)
                ip = f"127.{self._prefix}.{high % 254 + 1}.{low + 1}"
                if ip in self._used_ips:
                    continue
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    listener.bind((ip, self.ssh_port))
                except OSError:
                    listener.close()
                    continue
                self._used_ips.add(ip)
                return ip, listener
        raise RuntimeError(f"no free guest address in 127.{self._prefix}.0.0/16")

    def _note(self, message: str) -> None:
        log.warning("%s", message)
        self.notes.append(message)


def _ignore_gone(action: Callable[[], object]) -> None:
    try:
        action()
    except XapiError:  # the VM or the metrics record was already destroyed
        pass


def _root_vdi(state: Any, vm_ref: str) -> Optional[str]:
    """The VDI of the VM's bootable disk VBD (as the PV bootloader picks it), if any."""
    for vbd_ref in state.get("VM", vm_ref)["VBDs"]:
        vbd = state.get("VBD", vbd_ref)
        if vbd["type"] == "Disk" and vbd["bootable"] and not vbd["empty"]:
            if state.exists("VDI", vbd["VDI"]):
                return str(vbd["VDI"])
    return None


def _networks(guest: _Guest) -> dict[str, str]:
    # xapi_guest_agent.ml networks: the first IPv4 is published as both <vif>/ip and <vif>/ipv4/0
    out: dict[str, str] = {}
    for device, ip in guest.ips:
        out[f"{device}/ip"] = ip
        out[f"{device}/ipv4/0"] = ip
    return out


def _release(sandbox: Sandbox) -> str:
    return (sandbox.read_text("/etc/redhat-release") or "").strip()


def _facts(sandbox: Sandbox, pv_args: str) -> dict[str, str]:
    """What the console wording fills in: hostname, release line, kernel, PV args."""
    hostname = (sandbox.read_text("/etc/hostname") or "").strip() or "ddk"
    return {
        "hostname": hostname.split(".")[0],
        "release": _release(sandbox) or "XenServer DDK",
        "kernel": _kernel(sandbox),
        "pv_args": pv_args,
    }


def _kernel(sandbox: Sandbox) -> str:
    """``uname -r`` as the guest answers it (the image's own uname wrapper comes first in PATH)."""
    status, output = sandbox.run("uname -r")
    return output.decode(errors="replace").strip() if status == 0 else ""


def _os_version(facts: dict[str, str]) -> dict[str, str]:
    release = facts["release"]
    version = re.search(r"release (\d+)\.(\d+)", release)
    return {
        "name": release,
        "uname": facts["kernel"],
        "distro": release.split()[0].lower() if release else "",
        "major": version.group(1) if version else "",
        "minor": version.group(2) if version else "",
    }


def _pv_drivers_version(sandbox: Sandbox) -> dict[str, str]:
    """The guest tools shipped with the DDK carry the product's version and build."""
    found = re.search(r"release (\d+)\.(\d+)\.(\d+)-(\w+)", _release(sandbox))
    major, minor, micro, build = found.groups() if found else ("0", "0", "-1", "0")
    return {"major": major, "minor": minor, "micro": micro, "build": build}
