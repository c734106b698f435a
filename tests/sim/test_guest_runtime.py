"""GuestRuntime on a real SimHost: boot, IPs in guest metrics, faults, persistence."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from guest_support import add_vm, ddk_files, metrics_of, new_host, tar_bytes, wait_for

from xsddkvm.sim.ddk_image import DdkIdentity, write_guest_disk
from xsddkvm.sim.sandbox import Sandbox
from xsddkvm.sim.state import NULL_REF


@pytest.fixture
def host(tmp_path: Path):
    sim = new_host(tmp_path)
    yield sim
    sim.close()


def test_boot_publishes_the_ip_under_the_vif_device(host) -> None:
    vm = add_vm(host, networks=(False, True))
    host.guests.start(vm)
    metrics = wait_for(lambda: metrics_of(host, vm), what="guest metrics")
    ip = host.guests.ip_of(vm)
    assert ip is not None and ip.startswith("127.")
    assert metrics["networks"] == {"1/ip": ip, "1/ipv4/0": ip}
    assert metrics["live"] is True
    assert metrics["os_version"]["name"] == "XenServer DDK release 8.2.1-58 (xenenterprise)"
    assert metrics["os_version"]["uname"] == "4.19.0+1"
    assert metrics["os_version"]["major"] == "8"
    assert metrics["PV_drivers_version"] == {
        "major": "8", "minor": "2", "micro": "1", "build": "58",
    }  # fmt: skip
    sandbox = host.guests.sandbox_of(vm)
    assert (sandbox / "etc/ssh/ssh_host_rsa_key").exists()
    assert (sandbox / "etc/ssh/ssh_host_rsa_key.pub").read_text().startswith("ssh-rsa AAAA")


def test_each_guest_gets_its_own_address(host) -> None:
    first, second = add_vm(host), add_vm(host)
    host.guests.start(first)
    host.guests.start(second)
    ip1 = wait_for(lambda: host.guests.ip_of(first))
    ip2 = wait_for(lambda: host.guests.ip_of(second))
    assert ip1 != ip2


@pytest.mark.parametrize("networks", [(), (False,)])
def test_no_dhcp_vif_means_no_ip(host, networks) -> None:
    vm = add_vm(host, networks=networks)
    host.guests.start(vm)
    metrics = wait_for(lambda: metrics_of(host, vm), what="guest metrics")
    assert metrics["networks"] == {}
    assert host.guests.ip_of(vm) is None
    assert (host.guests.sandbox_of(vm) / "etc/ssh/ssh_host_rsa_key").exists()  # first boot


def test_no_guest_tools_publishes_no_metrics(tmp_path: Path) -> None:
    host = new_host(tmp_path, no_guest_tools=True)
    try:
        vm = add_vm(host)
        host.guests.start(vm)
        wait_for(lambda: host.guests.ip_of(vm), what="an address")
        wait_for(lambda: b"login:" in host.guests.console_of(vm).screen(), what="login prompt")
        assert host.state.get("VM", vm)["guest_metrics"] == NULL_REF
    finally:
        host.close()


def test_late_ip_publishes_metrics_first_then_the_address(tmp_path: Path) -> None:
    host = new_host(tmp_path, late_ip_seconds=0.3)
    try:
        vm = add_vm(host)
        host.guests.start(vm)
        metrics = wait_for(lambda: metrics_of(host, vm), what="guest metrics")
        assert metrics["networks"] == {}
        ip = host.guests.ip_of(vm)
        wait_for(lambda: (metrics_of(host, vm) or {})["networks"].get("0/ip") == ip, what="late IP")
    finally:
        host.close()


def test_a_disk_that_is_not_a_tar_panics(host) -> None:
    vm = add_vm(host, disk=b"\x01" * 4096)
    host.guests.start(vm)
    console = host.guests.console_of(vm)
    wait_for(lambda: b"Kernel panic" in console.screen(), what="kernel panic")
    assert host.guests.ip_of(vm) is None
    assert host.state.get("VM", vm)["guest_metrics"] == NULL_REF


def test_stop_removes_metrics_and_frees_everything(host) -> None:
    vm = add_vm(host)
    host.guests.start(vm)
    metrics_ref = wait_for(lambda: host.state.get("VM", vm)["guest_metrics"] != NULL_REF and
                           host.state.get("VM", vm)["guest_metrics"])  # fmt: skip
    sandbox = host.guests.sandbox_of(vm)
    host.guests.stop(vm, persist=False)
    assert host.state.get("VM", vm)["guest_metrics"] == NULL_REF
    assert not host.state.exists("VM_guest_metrics", metrics_ref)
    assert not sandbox.exists()
    assert host.guests.ip_of(vm) is None


def test_clean_shutdown_persists_the_guest_filesystem(host) -> None:
    vm = add_vm(host)
    host.guests.start(vm)
    wait_for(lambda: host.guests.ip_of(vm))
    (host.guests.sandbox_of(vm) / "root/made-in-guest").write_text("kept")
    host.guests.stop(vm, persist=True)
    vdi = host.state.get("VBD", host.state.get("VM", vm)["VBDs"][0])["VDI"]
    disk = host.vdi_path(vdi)
    assert disk.stat().st_size % (1024 * 1024) == 0
    host.guests.start(vm)
    wait_for(lambda: host.guests.ip_of(vm))
    sandbox = host.guests.sandbox_of(vm)
    assert (sandbox / "root/made-in-guest").read_text() == "kept"
    # the host key made on first boot is kept too, so the guest keeps its identity
    host.guests.stop(vm, persist=False)
    with tarfile.open(disk) as archive:
        assert "etc/ssh/ssh_host_rsa_key" in archive.getnames()


def test_persist_keeps_the_old_disk_when_it_does_not_fit(host) -> None:
    vm = add_vm(host, disk_bytes=1024 * 1024)
    host.guests.start(vm)
    wait_for(lambda: host.guests.ip_of(vm))
    (host.guests.sandbox_of(vm) / "root/big").write_bytes(os.urandom(2 * 1024 * 1024))
    vdi = host.state.get("VBD", host.state.get("VM", vm)["VBDs"][0])["VDI"]
    before = host.vdi_path(vdi).read_bytes()
    host.guests.stop(vm, persist=True)
    assert host.vdi_path(vdi).read_bytes() == before
    assert any(vm in note for note in host.guests.notes)


def _run(host, vm, command: str) -> tuple[int, str]:
    root = host.guests.sandbox_of(vm)
    sandbox = Sandbox(root, host.data_dir / "simbin" / root.name)
    status, output = sandbox.run(command)
    return status, output.decode()


def test_commands_see_the_guest_environment(host) -> None:
    vm = add_vm(host)
    host.guests.start(vm)
    wait_for(lambda: host.guests.ip_of(vm))
    root = host.guests.sandbox_of(vm)
    status, out = _run(host, vm, 'pwd; echo "$XSDDKVM_SIM_ROOT $USER $LANG"; uname -r; '
                                 'python3 -c "import pycdlib; print(1)"')  # fmt: skip
    assert status == 0
    assert out.splitlines() == [f"{root}/root", f"{root} root C", "4.19.0+1", "1"]


def test_make_fails_fault_puts_a_failing_make_first(tmp_path: Path) -> None:
    host = new_host(tmp_path, make_fails=True)
    try:
        vm = add_vm(host)
        host.guests.start(vm)
        wait_for(lambda: host.guests.ip_of(vm))
        status, out = _run(host, vm, "make build-iso")
        assert status == 2
        assert "make: *** [build-iso] Error 2" in out
    finally:
        host.close()


def test_stop_kills_running_commands(host) -> None:
    vm = add_vm(host)
    host.guests.start(vm)
    wait_for(lambda: host.guests.ip_of(vm))
    sandbox_dir = host.guests.sandbox_of(vm)
    guest = host.guests._guests[vm]
    proc = guest.sandbox.spawn("sleep 300 & sleep 300; echo never")
    host.guests.stop(vm, persist=False)
    assert proc.wait(timeout=5) != 0
    # the background child in the same process group is dead too (a zombie at most: PID 1 of
    # a container may not reap orphans)
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True)
    assert all(stat.startswith("Z") for stat in out.stdout.split())
    assert not sandbox_dir.exists()


def test_image_files_drive_the_identity(host) -> None:
    disk = tar_bytes(ddk_files(version="7.1.0-137"))
    vm = add_vm(host, disk=disk)
    host.guests.start(vm)
    metrics = wait_for(lambda: metrics_of(host, vm))
    assert metrics["PV_drivers_version"]["build"] == "137"
    assert metrics["os_version"]["minor"] == "1"


def test_the_fake_ddk_image_boots(host) -> None:
    disk = io.BytesIO()
    write_guest_disk(disk, DdkIdentity(product_version="6.5.0", build_number="90233c"))
    vm = add_vm(host, disk=disk.getvalue(), pv_args="")
    host.guests.start(vm)
    metrics = wait_for(lambda: metrics_of(host, vm), what="guest metrics")
    assert metrics["os_version"]["uname"] == "4.19.0+1"
    console = host.guests.console_of(vm)
    # the image's version picks the 6.x wording of the first-boot dialog
    wait_for(lambda: console.screen().endswith(b"Please enter a new password for the root user: "))
    status, out = _run(host, vm, "uname -r; cat $XSDDKVM_SIM_ROOT/etc/redhat-release")
    assert status == 0 and out.startswith("4.19.0+1\n")
