"""The fake DDK image: guest files, and real example builds in an extracted guest tree."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import pycdlib
import pytest

from xsddkvm.sim.ddk_image import DdkIdentity, make_image, write_guest_disk
from xsddkvm.sim.sandbox import Sandbox

KERNEL = "4.19.0+1"


class Guest:
    """An extracted guest tree with the environment docs/architecture.md gives guest commands."""

    def __init__(self, tmp: Path, ident: DdkIdentity) -> None:
        self.root = tmp / "guest"
        disk = tmp / "disk"
        with open(disk, "w+b") as f:
            self.disk_size = write_guest_disk(f, ident)
        with tarfile.open(disk) as archive:
            archive.extractall(self.root)
        simbin = tmp / "simbin"
        simbin.mkdir()
        (simbin / "python3").symlink_to(sys.executable)
        self.sandbox = Sandbox(self.root, simbin)
        self.env = self.sandbox.env()

    def run(self, command: str, cwd: str = "/root", stdin: Optional[bytes] = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        return subprocess.run(
            ["/bin/sh", "-c", command], cwd=self.root / cwd.lstrip("/"), env=self.env,
            input=stdin or b"", capture_output=True, timeout=timeout, start_new_session=True,
        )  # fmt: skip

    def path(self, guest_path: str) -> Path:
        return self.root / guest_path.lstrip("/")


@pytest.fixture
def guest(tmp_path: Path) -> Guest:
    return Guest(tmp_path, DdkIdentity())


def iso_files(path: Path) -> dict[str, bytes]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    files = {}
    try:
        for parent, _, names in iso.walk(rr_path="/"):
            for name in names:
                out = io.BytesIO()
                full = parent.rstrip("/") + "/" + name
                iso.get_file_from_iso_fp(out, rr_path=full)
                files[full.lstrip("/")] = out.getvalue()
        files[".volume"] = iso.pvd.volume_identifier.rstrip()
    finally:
        iso.close()
    return files


def test_guest_identity_files(guest):
    release = guest.path("/etc/redhat-release").read_text()
    assert release == "XenServer DDK release 8.2.1-58 (xenenterprise)\n"
    assert 'VERSION="8.2.1-58"' in guest.path("/etc/os-release").read_text()
    assert guest.sandbox.check_password("root", "xensource")
    assert guest.path(f"/lib/modules/{KERNEL}/build/Makefile").exists()
    assert guest.disk_size % (1024 * 1024) == 0 and guest.disk_size <= 1024 * 1024
    ddk = guest.path("/etc/xsddkvm-sim/ddk.json").read_text()
    assert '"kernel_package": "kernel-devel-4.19.19-8.0.30"' in ddk


def test_uname_answers_for_the_ddk_kernel(guest):
    assert guest.run("uname -r").stdout == f"{KERNEL}\n".encode()
    assert guest.run("uname -m").stdout == b"x86_64\n"
    assert guest.run("uname").stdout == b"Linux\n"
    assert guest.run("uname -a").stdout.startswith(b"Linux ")
    assert KERNEL.encode() in guest.run("uname -a").stdout


def test_chpasswd_rewrites_the_shadow_file(guest):
    result = guest.run("chpasswd", stdin=b"root:n3w-pass\n")
    assert result.returncode == 0, result.stderr
    assert guest.sandbox.check_password("root", "n3w-pass")
    assert not guest.sandbox.check_password("root", "xensource")


def assert_pack(directory: Path, label: str) -> dict[str, bytes]:
    """The pack files are there and their md5 files verify."""
    check = subprocess.run(["md5sum", "-c", f"{label}.iso.md5"], cwd=directory,
                           capture_output=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    files = iso_files(directory / f"{label}.iso")
    metadata = hashlib.md5(files["XS-REPOSITORY"] + files["XS-PACKAGES"]).hexdigest() + "\n"
    assert (directory / f"{label}.metadata.md5").read_text() == metadata
    return files


def test_userspace_example_builds_a_pack(guest):
    result = guest.run("make build-iso", cwd="/root/examples/userspace")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    files = assert_pack(guest.path("/root/examples/userspace"), "helloworld-userspace")
    assert files[".volume"] == b"helloworld userspace example"
    repo = ET.fromstring(files["XS-REPOSITORY"])
    assert (repo.get("originator"), repo.get("name"), repo.get("version")) == (
        "example", "helloworld-userspace", "8.2.1")  # fmt: skip
    requires = repo.find("requires")
    assert requires is not None and requires.attrib == {
        "originator": "xs", "name": "main", "test": "eq", "product": "XenServer",
        "version": "8.2.1"}  # fmt: skip
    (package,) = ET.fromstring(files["XS-PACKAGES"])
    rpm = files[package.text.strip()]  # type: ignore[union-attr]
    assert package.get("type") == "rpm" and package.get("md5") == hashlib.md5(rpm).hexdigest()
    assert package.get("size") == str(len(rpm))


def test_driver_example_builds_a_driver_pack_for_the_ddk_kernel(guest):
    result = guest.run("make build-iso", cwd="/root/examples/driver")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    files = assert_pack(guest.path("/root/examples/driver"), "helloworld")
    (package,) = ET.fromstring(files["XS-PACKAGES"])
    name = f"helloworld-{KERNEL}-modules-1.0-1.x86_64.rpm"
    assert package.text and package.text.strip() == name
    assert (package.get("type"), package.get("kernel")) == ("driver-rpm", KERNEL)
    rpm = guest.path(f"/root/rpmbuild/RPMS/x86_64/{name}")
    query = guest.run(f"rpm -qp --requires {rpm}; rpm -qlp {rpm}").stdout.decode()
    assert f"kernel-uname-r = {KERNEL}" in query
    assert f"/lib/modules/{KERNEL}/extra/helloworld.ko" in query
    payload = guest.run(f"rpm2archive - < {rpm}").stdout  # the RPM payload as a tar.gz
    with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
        ko = archive.extractfile(f"./lib/modules/{KERNEL}/extra/helloworld.ko")
        module = ko.read().decode() if ko else ""
    assert f"vermagic={KERNEL} " in module and "Hello, world" in module


def test_combined_example_on_an_update_style_ddk_asks_for_the_passphrase(guest):
    result = guest.run("make build-iso", cwd="/root/examples/combined", stdin=b"secret\n")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prompt = b"Enter passphrase for Example Updates (update) <example@example.com>: "
    assert prompt in result.stderr
    files = iso_files(guest.path("/root/examples/combined/helloworld.iso"))
    update = ET.fromstring(files["update.xml"])
    assert update.get("name-label") == "helloworld" and int(update.get("installation-size", 0))
    assert f"Packages/helloworld-{KERNEL}-modules-1.0-1.x86_64.rpm" in files
    assert "Packages/helloworld-1.0-1.x86_64.rpm" in files


def test_build_update_without_an_answer_fails_instead_of_hanging(guest):
    guest.run("make build-rpms", cwd="/root/examples/combined")
    rpm = "/root/rpmbuild/RPMS/x86_64/helloworld-1.0-1.x86_64.rpm"
    result = guest.run("build-update --uuid 3f0a4e52-9c1b-4d7e-8a55-2f6b1c9d0e17 -l x -v 1 "
                       f"-d x -o x.iso -k someone {guest.root}{rpm}")  # fmt: skip
    assert result.returncode != 0 and b"no passphrase given" in result.stderr


def test_combined_example_on_a_6x_ddk_builds_a_legacy_pack(tmp_path):
    guest = Guest(tmp_path, DdkIdentity(product_version="6.5.0", build_number="90233c"))
    assert not guest.path("/usr/bin/build-update").exists()
    result = guest.run("make build-iso", cwd="/root/examples/combined")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    files = assert_pack(guest.path("/root/examples/combined"), "helloworld")
    assert ET.fromstring(files["XS-REPOSITORY"]).get("version") == "6.5.0"
    types = sorted(p.get("type", "") for p in ET.fromstring(files["XS-PACKAGES"]))
    assert types == ["driver-rpm", "rpm"]


def test_build_supplemental_pack_without_a_mandatory_option_exits_1_with_usage(guest):
    rpm = guest.path("/root/x.rpm")
    rpm.write_bytes(b"")
    result = guest.run("build-supplemental-pack.sh --output=. --vendor-code=v --vendor-name=V "
                       f"--text=t --version=1 {rpm}")  # fmt: skip
    assert result.returncode == 1
    assert b"Usage:" in result.stderr and b"--label" in result.stderr


def test_build_supplemental_pack_rejects_a_bad_label(guest):
    result = guest.run("build-supplemental-pack.sh --output=. --vendor-code=v --vendor-name=V "
                       "--label='bad label' --text=t --version=1 x.rpm")  # fmt: skip
    assert result.returncode == 1 and b"invalid originator/name" in result.stderr


def test_iso_form_has_the_citrix_layout(tmp_path):
    image = make_image(tmp_path / "ddk.iso", form="iso", chunk_size=300_000)
    files = iso_files(image)
    assert files[".volume"] == b"XenServer-8.2.1 DDK"
    chunks = sorted(name for name in files if name.startswith("ddk/xvda/"))
    assert chunks[:2] == ["ddk/xvda/chunk-000000000.gz", "ddk/xvda/chunk-000000001.gz"]
    appliance = ET.fromstring(files["ddk/ova.xml"])
    assert appliance.get("version") == "0.1"
    vdi = appliance.find("vdi")
    assert vdi is not None and vdi.get("type") == "dir-gzipped-chunks"
    assert os.path.getsize(image) < 2 * 1024 * 1024


def test_unknown_form_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown image form"):
        make_image(tmp_path / "x", form="vhd")
