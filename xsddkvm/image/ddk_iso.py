"""A Citrix DDK ISO (ddk.md §1.2: ``ddk/ova.xml`` + ``ddk/<dev>/chunk-%09d.gz``) read in place with
pycdlib and converted on the fly to a current-format XVA stream.

The stream's length comes from the gzip trailers (ISIZE), so nothing is decompressed before
the upload starts, and decompression is bounded to one 1 MiB XVA chunk at a time.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Optional, Union

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from ..errors import ImageError
from .xva import CHUNK, VmSpec, XvaStream, XvaVersion

READ = 64 * 1024
GZIP_WBITS = 31
_CHUNK_FILE = re.compile(r"^chunk-(\d{9})\.gz$")  # cli_operations.ml: "%s/chunk-%09d.gz"
_LABEL = re.compile(r"^(?P<brand>.*?)\s*DDK\s+(?P<version>[^\s-]+)-(?P<build>\S+)")
_HINT = "Download the DDK ISO again (XenServer-<version>-DDK.iso) and check its checksum."


class DdkIso:
    """An open DDK ISO; use as a context manager or call ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._iso = pycdlib.PyCdlib()
        try:
            self._iso.open(str(path))
        except (PyCdlibException, OSError) as exc:
            raise ImageError(f"{path}: not an ISO 9660 image ({exc}).", _HINT) from None
        try:
            self._load()
        except BaseException:
            self._iso.close()
            raise

    def _load(self) -> None:
        if self._iso.has_rock_ridge():
            self._key = "rr_path"
        elif self._iso.has_joliet():
            self._key = "joliet_path"
        else:
            raise ImageError(f"{self.path}: the ISO has no Rock Ridge or Joliet file names.", _HINT)
        try:
            ova = self._read_file("/ddk/ova.xml")
        except PyCdlibException:
            raise ImageError(
                f"{self.path}: no ddk/ova.xml: this ISO is not a XenServer DDK.",
                "Pass the DDK ISO (XenServer-<version>-DDK.iso), not an install or pack ISO.",
            ) from None
        vm, vdi = _parse_appliance(self.path, ova)
        label = vm.findtext("label", "").strip()
        config = vm.find("config")
        hacks = vm.find("hacks")
        mem = config.get("mem_set", "0") if config is not None else "0"
        vcpus = config.get("vcpus", "1") if config is not None else "1"
        cmdline = hacks.get("kernel_boot_cmdline", "") if hacks is not None else ""
        found = _LABEL.match(label)
        self.product_brand = found.group("brand") if found else "XenServer"
        self.product_version = found.group("version") if found else ""
        self.build_number = found.group("build") if found else ""
        self._dir = "/ddk/" + vdi.get("source", "").removeprefix("file://")
        self._files = self._chunk_files()
        size = sum(isize for _, isize in self._files)
        declared = int(vdi.get("size", "0"))
        if size != declared:
            raise ImageError(
                f"{self.path}: the disk chunks hold {size} bytes but ova.xml declares "
                f"{declared}; a chunk is missing or corrupt.",
                _HINT,
            )
        self.spec = VmSpec(
            name_label=label,
            name_description=vm.findtext("shortdesc", "").strip(),
            memory=int(mem),
            vcpus=int(vcpus),
            disk_size=size,
            PV_args=cmdline,
        )

    def _read_file(self, path: str) -> bytes:
        with self._iso.open_file_from_iso(**{self._key: path}) as fp:
            return bytes(fp.read())

    def _chunk_files(self) -> list[tuple[str, int]]:
        """``(path, decompressed size)`` per chunk, sizes from each gzip trailer (ISIZE)."""
        try:
            children = self._iso.list_children(**{self._key: self._dir})
            names = sorted(n for n in map(self._name, children) if _CHUNK_FILE.match(n))
        except PyCdlibException:
            names = []
        if not names:
            raise ImageError(f"{self.path}: no disk chunks under {self._dir[1:]}/.", _HINT)
        for expected, name in enumerate(names):
            number = int(_CHUNK_FILE.match(name).group(1))  # type: ignore[union-attr]
            if number != expected:
                raise ImageError(
                    f"{self.path}: missing chunk {self._dir[1:]}/chunk-{expected:09d}.gz.", _HINT
                )
        files = []
        for name in names:
            path = f"{self._dir}/{name}"
            with self._iso.open_file_from_iso(**{self._key: path}) as fp:
                magic = fp.read(2)
                fp.seek(-4, 2)
                trailer = fp.read(4)
            if magic != b"\x1f\x8b" or len(trailer) != 4:
                raise ImageError(f"{self.path}: {path[1:]} is not a gzip file.", _HINT)
            files.append((path, struct.unpack("<I", trailer)[0]))  # RFC 1952 ISIZE
        return files

    def _name(self, record: Any) -> str:
        if self._key == "rr_path":
            rr = record.rock_ridge
            return rr.name().decode() if rr is not None else ""
        return str(record.file_identifier().decode("utf-16-be"))

    def to_xva(self) -> XvaStream:
        """The disk as a current-format XVA; byte-exact, every 1 MiB chunk included."""
        size = self.spec.disk_size
        chunks = [(i, min(CHUNK, size - i * CHUNK)) for i in range(-(-size // CHUNK))]
        version = XvaVersion(
            product_version=self.product_version or "8.2.1",
            product_brand=self.product_brand,
            build_number=self.build_number,
        )
        return XvaStream(self.spec, chunks, self._blocks, version)

    def _blocks(self) -> Iterator[bytes]:
        """The disk in 1 MiB blocks: one copy per block (chunk files need not align to 1 MiB)."""
        parts: list[memoryview] = []
        have = 0
        for path, isize in self._files:
            produced = 0
            for out in self._inflate(path):
                produced += len(out)
                view = memoryview(out)
                while view:
                    take = view[: CHUNK - have]
                    parts.append(take)
                    have += len(take)
                    view = view[len(take) :]
                    if have == CHUNK:
                        yield b"".join(parts)
                        parts, have = [], 0
            if produced != isize:
                raise ImageError(
                    f"{self.path}: {path[1:]} decompresses to {produced} bytes, its trailer "
                    f"says {isize}: the chunk is corrupt.",
                    _HINT,
                )
        if parts:
            yield b"".join(parts)

    def _inflate(self, path: str) -> Iterator[bytes]:
        with self._iso.open_file_from_iso(**{self._key: path}) as fp:
            inflater = zlib.decompressobj(GZIP_WBITS)
            data = b""
            try:
                while True:
                    if not data:
                        data = fp.read(READ)
                        if not data:
                            if not inflater.eof:
                                raise zlib.error("unexpected end of gzip data")
                            return
                    if inflater.eof:  # a further gzip member follows
                        inflater = zlib.decompressobj(GZIP_WBITS)
                    out = inflater.decompress(data, CHUNK)
                    data = inflater.unconsumed_tail or (
                        inflater.unused_data if inflater.eof else b""
                    )
                    if out:
                        yield out
            except zlib.error as exc:
                raise ImageError(f"{self.path}: {path[1:]} is corrupt ({exc}).", _HINT) from None

    def close(self) -> None:
        self._iso.close()

    def __enter__(self) -> DdkIso:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def _parse_appliance(path: Path, data: bytes) -> tuple[ET.Element, ET.Element]:
    # ocaml/xapi-aux/xva.ml parse_appliance: only version "0.1" is understood
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ImageError(f"{path}: ddk/ova.xml is not valid XML ({exc}).", _HINT) from None
    if root.tag != "appliance" or root.get("version") != "0.1":
        raise ImageError(
            f"{path}: ddk/ova.xml is <{root.tag} version={root.get('version')!r}>, "
            'expected <appliance version="0.1">.',
            "This tool reads the Citrix DDK ISO layout; import other images as XVA files.",
        )
    vm = root.find("vm")
    vdis = {v.get("name"): v for v in root.findall("vdi")}
    vbds = vm.findall("vbd") if vm is not None else []
    root_vbd = next((b for b in vbds if b.get("function") == "root"), vbds[0] if vbds else None)
    if vm is None or root_vbd is None or root_vbd.get("vdi") not in vdis:
        raise ImageError(f"{path}: ddk/ova.xml names no VM with a root disk.", _HINT)
    return vm, vdis[root_vbd.get("vdi")]


def open_ddk_iso(path: Union[str, Path]) -> DdkIso:
    """Open a DDK ISO for reading in place; raises ImageError naming the file and the fix."""
    return DdkIso(Path(path))
