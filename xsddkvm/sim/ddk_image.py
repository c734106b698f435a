"""``xsddkvm sim make-image``: a DDK-like guest as a current-format XVA or as a Citrix DDK ISO.

The guest disk is a tar archive of the guest filesystem (docs/architecture.md, "Guest disks and
sandboxes") zero-padded to whole MiB. The filesystem comes from ``ddk_files/``: ``base/`` always,
``update/`` on top for 7.x-style images; ``@NAME@`` placeholders in paths and contents are
filled with the image's identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import secrets
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Optional
from xml.sax.saxutils import quoteattr

import pycdlib

from .xva_writer import write_xva

FILES = Path(__file__).with_name("ddk_files")
MIB = 1024 * 1024
ROOT_PASSWORD = "xensource"  # baked into DDK appliances (ddk.md §2, XenRT ROOT_PASSWORD_DDK)
MTIME = 1546300800  # fixed, so that the same identity gives the same disk
MEMORY = 2 * 1024 * MIB
GZIP_CHUNK = 10**9  # ddk.md §1.2: dd bs=1MB count=1000 per chunk
DEFAULT_KERNEL_PACKAGE = {"4.19.0+1": "kernel-devel-4.19.19-8.0.30"}


@dataclasses.dataclass(frozen=True)
class DdkIdentity:
    product_version: str = "8.2.1"
    build_number: str = "58"
    kernel: str = "4.19.0+1"
    brand: str = "XenServer"
    update_style: Optional[bool] = None  # None: 7.x and later
    console_wording: Optional[str] = None  # None: chosen from the version by the console

    @property
    def major(self) -> int:
        return int(self.product_version.split(".")[0])

    @property
    def updates(self) -> bool:
        return self.major >= 7 if self.update_style is None else self.update_style

    @property
    def vm_name(self) -> str:
        return f"{self.brand} DDK {self.product_version}-{self.build_number}"

    def fill(self, text: str) -> str:
        for key, value in (
            ("@PRODUCT_BRAND@", self.brand),
            ("@PRODUCT_VERSION@", self.product_version),
            ("@BUILD_NUMBER@", self.build_number),
            ("@KERNEL@", self.kernel),
        ):
            text = text.replace(key, value)
        return text

    def ddk_json(self) -> dict[str, str]:
        kernel_package = DEFAULT_KERNEL_PACKAGE.get(
            self.kernel, f"kernel-devel-{self.kernel.replace('+', '-')}"
        )
        data = {
            "product_brand": self.brand,
            "product_version": self.product_version,
            "build_number": self.build_number,
            "kernel": self.kernel,
            "kernel_package": kernel_package,
        }
        if self.console_wording:
            data["console_wording"] = self.console_wording
        return data


def guest_files(ident: DdkIdentity) -> Iterator[tuple[str, bytes, int]]:
    """``(path, content, mode)`` of every file in the guest, later layers overriding."""
    files: dict[str, tuple[bytes, int]] = {}
    for layer in ["base", "update"] if ident.updates else ["base"]:
        top = FILES / layer
        # pip byte-compiles the guest's Python scripts on install: those caches are not guest files.
        for path in sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            content = ident.fill(path.read_text()).encode()
            mode = 0o755 if content.startswith(b"#!") else 0o644
            files[ident.fill(path.relative_to(top).as_posix())] = (content, mode)
    salt = secrets.token_hex(8)
    digest = hashlib.sha256((salt + ROOT_PASSWORD).encode()).hexdigest()
    files["etc/xsddkvm-sim/shadow"] = (f"root:{salt}:{digest}\n".encode(), 0o600)
    files["etc/xsddkvm-sim/ddk.json"] = (json.dumps(ident.ddk_json(), indent=2).encode(), 0o644)
    for name, (content, mode) in sorted(files.items()):
        yield name, content, mode


def write_guest_disk(out: BinaryIO, ident: DdkIdentity, pad_to: Optional[int] = None) -> int:
    """Write the guest tar archive, zero-padded (sparsely) to a whole MiB or to ``pad_to``."""
    start = out.tell()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        seen: set[str] = set()
        for path, content, mode in guest_files(ident):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                _add_dir(archive, "/".join(parts[:depth]), seen)
            info = _info(path, tarfile.REGTYPE, mode)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for directory in ("etc/ssh", "tmp", "root/rpmbuild"):
            _add_dir(archive, directory, seen)
    used = out.tell() - start
    size = max(-(-used // MIB) * MIB, -(-(pad_to or 0) // MIB) * MIB)
    out.truncate(start + size)
    return size


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, MTIME
    info.uname = info.gname = "root"
    return info


def _add_dir(archive: tarfile.TarFile, name: str, seen: set[str]) -> None:
    if name not in seen:
        seen.add(name)
        archive.addfile(_info(name, tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755))


def make_image(
    out: Path,
    form: str = "xva",
    product_version: str = "8.2.1",
    build_number: str = "58",
    kernel: str = "4.19.0+1",
    brand: str = "XenServer",
    pad_to: Optional[int] = None,
    update_style: Optional[bool] = None,
    console_wording: Optional[str] = None,
    chunk_size: int = GZIP_CHUNK,
) -> Path:
    """Write a DDK-like image at ``out``: ``form`` "xva" or "iso" (Citrix layout, gzip chunks
    of ``chunk_size`` bytes). Returns ``out``."""
    if form not in ("xva", "iso"):
        raise ValueError(f"unknown image form {form!r}: expected 'xva' or 'iso'")
    ident = DdkIdentity(product_version, build_number, kernel, brand, update_style, console_wording)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ddk-image-") as tmp:
        disk_path = Path(tmp) / "xvda"
        with open(disk_path, "w+b") as disk:
            size = write_guest_disk(disk, ident, pad_to)
            if form == "xva":
                vm = {
                    "name_label": ident.vm_name, "PV_args": "", "VCPUs_max": 1,
                    "VCPUs_at_startup": 1, "memory_static_max": MEMORY,
                    "memory_dynamic_max": MEMORY, "memory_dynamic_min": MEMORY,
                    "memory_target": MEMORY,
                }  # fmt: skip
                version = {
                    "product_version": product_version, "product_brand": brand,
                    "build_number": build_number, "xapi_major": 1, "xapi_minor": 1,
                }  # fmt: skip
                return write_xva(out, disk, size, vm, version)
            return _write_ddk_iso(out, disk, size, ident, chunk_size, Path(tmp))


def appliance_xml(ident: DdkIdentity, size: int) -> bytes:
    """``ddk/ova.xml`` in the old ``<appliance version="0.1">`` form (ocaml/xapi-aux/xva.ml)."""
    return (
        '<?xml version="1.0" ?>\n<appliance version="0.1">\n'
        '  <vm name="vm">\n'
        f"    <label>{ident.vm_name}</label>\n"
        "    <shortdesc>Driver Development Kit</shortdesc>\n"
        f'    <config mem_set="{MEMORY}" vcpus="1"/>\n'
        f'    <hacks is_hvm="false" kernel_boot_cmdline={quoteattr("root=/dev/xvda1 ro")}/>\n'
        '    <vbd device="xvda" function="root" mode="w" vdi="vdi_xvda"/>\n'
        "  </vm>\n"
        f'  <vdi name="vdi_xvda" size="{size}" source="file://xvda" '
        'type="dir-gzipped-chunks" variety="system"/>\n'
        "</appliance>\n"
    ).encode()


def _write_ddk_iso(
    out: Path, disk: BinaryIO, size: int, ident: DdkIdentity, chunk_size: int, tmp: Path
) -> Path:
    chunks: list[Path] = []
    disk.seek(0)
    for number in range(-(-size // chunk_size)):
        path = tmp / f"chunk-{number:09d}.gz"
        with gzip.GzipFile(path, "wb", compresslevel=6, mtime=MTIME) as gz:
            left = min(chunk_size, size - number * chunk_size)
            while left:
                block = disk.read(min(MIB, left))
                gz.write(block)
                left -= len(block)
        chunks.append(path)
    iso = pycdlib.PyCdlib()
    label = f"{ident.brand}-{ident.product_version} DDK"  # mkisofs -V in the ova_dom0 rule
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=label[:16])
    iso.pvd.volume_identifier = label[:32].encode().ljust(32)
    for directory in ("/ddk", "/ddk/xvda"):
        iso.add_directory(
            iso_path=directory, rr_name=directory.rsplit("/")[-1], joliet_path=directory
        )
    ova = appliance_xml(ident, size)
    iso.add_fp(
        io.BytesIO(ova), len(ova), "/ddk/ova.xml", rr_name="ova.xml", joliet_path="/ddk/ova.xml"
    )
    with contextlib.ExitStack() as handles:
        for path in chunks:
            name = f"/ddk/xvda/{path.name}"
            handle = handles.enter_context(open(path, "rb"))
            iso.add_fp(handle, path.stat().st_size, name, rr_name=path.name, joliet_path=name)
        iso.write(str(out))
    iso.close()
    return out
