"""Helpers for the guest tests: a tiny DDK-like disk, a VM wired to a real SimHost, waits.

No tests here; the other test_guest_*/test_console_*/test_sshd_* modules import it.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

from xsddkvm.sim.host import SimHost
from xsddkvm.sim.scenario import default_scenario

T = TypeVar("T")

PASSWORD = "xensource"
SALT = "0123abcd"
UNAME = '#!/bin/sh\nif [ "$1" = "-r" ]; then echo 4.19.0+1; else echo Linux; fi\n'


def ddk_files(version: str = "8.2.1-58", **extra: Union[str, bytes]) -> dict[str, Any]:
    digest = hashlib.sha256((SALT + PASSWORD).encode()).hexdigest()
    files: dict[str, Any] = {
        "etc/redhat-release": f"XenServer DDK release {version} (xenenterprise)\n",
        "etc/hostname": "ddk\n",
        "etc/xsddkvm-sim/shadow": f"root:{SALT}:{digest}\n",
        "usr/bin/uname": (UNAME, 0o755),
        "root/.bashrc": "# empty\n",
    }
    files.update(extra)
    return files


def tar_bytes(files: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, content in sorted(files.items()):
            mode = 0o644
            if isinstance(content, tuple):
                content, mode = content
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def new_host(tmp_path: Path, boot_seconds: float = 0.05, **faults: Any) -> SimHost:
    scenario = default_scenario()
    scenario.guest.boot_seconds = boot_seconds
    for name, value in faults.items():
        assert hasattr(scenario.faults, name), name
        setattr(scenario.faults, name, value)
    return SimHost(scenario, tmp_path / "sim", port=0)


def add_vm(
    host: SimHost,
    disk: Optional[bytes] = None,
    networks: tuple[bool, ...] = (True,),
    pv_args: str = "noninteractive",
    disk_bytes: int = 8 * 1024 * 1024,
    power_state: str = "Running",
) -> str:
    """A VM with a root disk holding ``disk`` and one VIF per entry (True = DHCP).

    "Running" suits tests that call ``host.guests.start`` themselves; end-to-end tests make it
    "Halted" and start it through the API.
    """
    state = host.state
    vdi = host.create_vdi(host.sr, disk_bytes, name_label="root")
    with open(host.vdi_path(vdi), "r+b") as f:
        f.write(tar_bytes(ddk_files()) if disk is None else disk)
    vm = state.create("VM", name_label="ddk", PV_args=pv_args, power_state=power_state)
    state.create("VBD", VM=vm, VDI=vdi, bootable=True, type="Disk", userdevice="0")
    nets = {host.has_dhcp(ref): ref for ref in state.refs("network")}
    for device, dhcp in enumerate(networks):
        state.create("VIF", VM=vm, network=nets[dhcp], device=str(device), MAC="aa:bb")
    return vm


def wait_for(condition: Callable[[], Optional[T]], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def metrics_of(host: SimHost, vm: str) -> Optional[dict[str, Any]]:
    ref = host.state.get("VM", vm)["guest_metrics"]
    if not host.state.exists("VM_guest_metrics", ref):
        return None
    return host.state.get("VM_guest_metrics", ref)
