"""Current-format XVA (xenapi.md §3.1-3.4): a streaming writer whose length is known up front,
a header reader and a full checksum validator.

The writer builds tar headers with ``tarfile`` (USTAR, integer mtimes, no PAX) and yields the
archive piece by piece, so memory stays at one 1 MiB chunk whatever the disk size.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import tarfile
import time
import xmlrpc.client
import zlib
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Optional, Union

import xxhash

from ..errors import ImageError

CHUNK = 1024 * 1024  # ocaml/xapi/stream_vdi.ml: chunk_size = 1 MiB
BLOCK = 512
EXPORT_VSN = 2  # ocaml/xapi/xapi_globs.ml: 2 = Miami GA, inline checksums, no end table
VDI_ID = "Ref:2"

Opener = Callable[[], BinaryIO]
ChunkSource = Callable[[], Iterator[bytes]]
ProgressFn = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class VmSpec:
    """What the VM record in ``ova.xml`` says; sizes in bytes."""

    name_label: str
    memory: int
    vcpus: int
    disk_size: int
    name_description: str = ""
    PV_args: str = ""
    PV_bootloader: str = "pygrub"
    other_config: dict[str, str] = dataclasses.field(default_factory=dict)
    is_a_template: bool = False


@dataclasses.dataclass(frozen=True)
class XvaVersion:
    """The ``version`` header. xapi rejects an XVA whose xapi_major/minor is newer than its own
    (importexport.ml assert_compatible); a synthesised image therefore claims an old xapi."""

    product_version: str = "8.2.1"
    product_brand: str = "XenServer"
    build_number: str = ""
    xapi_major: int = 1
    xapi_minor: int = 1


@dataclasses.dataclass(frozen=True)
class XvaHeader:
    version: dict[str, str]
    name_label: str
    name_description: str
    memory: int
    vcpus: int
    PV_args: str
    other_config: dict[str, str]
    disk_size: int


def _pad(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _member_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _member_size(size: int) -> int:
    return BLOCK + size + len(_pad(size))


def ova_xml(spec: VmSpec, version: XvaVersion) -> bytes:
    """``ova.xml`` as export.ml writes it: one XML-RPC value in xapi's untyped-int dialect."""
    memory = spec.memory
    vm = {
        "name_label": spec.name_label, "name_description": spec.name_description,
        "power_state": "Halted", "is_a_template": spec.is_a_template, "user_version": 1,
        "memory_static_max": memory, "memory_dynamic_max": memory,
        "memory_dynamic_min": memory, "memory_static_min": memory, "memory_target": memory,
        "VCPUs_max": spec.vcpus, "VCPUs_at_startup": spec.vcpus, "VCPUs_params": {},
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "PV_bootloader": spec.PV_bootloader,
        "PV_kernel": "", "PV_ramdisk": "", "PV_args": spec.PV_args, "PV_bootloader_args": "",
        "PV_legacy_args": "", "HVM_boot_policy": "", "HVM_boot_params": {}, "platform": {},
        "other_config": dict(spec.other_config), "domain_type": "pv",
        "VBDs": ["Ref:1"], "VIFs": [], "consoles": [], "blobs": {},
    }  # fmt: skip
    vbd = {
        "VM": "Ref:0", "VDI": VDI_ID, "device": "xvda", "userdevice": "0", "bootable": True,
        "mode": "RW", "type": "Disk", "unpluggable": False, "empty": False, "other_config": {},
    }  # fmt: skip
    vdi = {
        "name_label": f"{spec.name_label} disk", "name_description": "", "SR": "Ref:3",
        "virtual_size": spec.disk_size, "type": "system", "sharable": False,
        "read_only": False, "other_config": {}, "sm_config": {}, "VBDs": ["Ref:1"],
    }  # fmt: skip
    sr = {"name_label": "Local storage", "content_type": "user", "type": "ext", "VDIs": [VDI_ID]}
    header = {
        "version": {
            "hostname": "localhost", "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "product_version": version.product_version, "product_brand": version.product_brand,
            "build_number": version.build_number, "xapi_major": version.xapi_major,
            "xapi_minor": version.xapi_minor, "export_vsn": EXPORT_VSN,
        },
        "objects": [
            {"class": cls, "id": ref, "snapshot": rec}
            for cls, ref, rec in (("VM", "Ref:0", vm), ("VBD", "Ref:1", vbd),
                                  (("VDI", VDI_ID, vdi)), ("SR", "Ref:3", sr))
        ],
    }  # fmt: skip
    return _xml_value(header).encode()


def _xml_value(value: Any) -> str:
    # mirage/ocaml-rpc xmlrpc.ml add_value (strict=false): strings and ints untyped
    if isinstance(value, bool):
        return f"<value><boolean>{int(value)}</boolean></value>"
    if isinstance(value, dict):
        members = "".join(
            f"<member><name>{_escape(k)}</name>{_xml_value(v)}</member>" for k, v in value.items()
        )
        return f"<value><struct>{members}</struct></value>"
    if isinstance(value, list):
        return f"<value><array><data>{''.join(map(_xml_value, value))}</data></array></value>"
    return f"<value>{_escape(str(value))}</value>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class XvaStream:
    """A read-only file-like XVA whose exact length is known before the first byte is read.

    ``chunks`` lists ``(chunk number, length)`` of the data members to write and ``source``
    yields exactly those chunks' bytes, in order, when the stream starts.
    """

    def __init__(
        self,
        spec: VmSpec,
        chunks: Sequence[tuple[int, int]],
        source: ChunkSource,
        version: XvaVersion = XvaVersion(),
    ) -> None:
        self.spec = spec
        self._ova = ova_xml(spec, version)
        self._chunks = list(chunks)
        self._source = source
        self._mtime = int(time.time())
        self._length = _member_size(len(self._ova)) + 2 * BLOCK
        for _, size in self._chunks:
            self._length += _member_size(size) + _member_size(16)
        self._pieces: Optional[Generator[bytes, None, None]] = None
        self._buffer = memoryview(b"")
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._pieces is None:
            self._pieces = self._generate()
        if n is None or n < 0:
            n = self._length - self._pos
        parts: list[memoryview] = []
        want = n
        while want > 0:
            if not self._buffer:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._buffer = memoryview(piece)
            take = self._buffer[:want]
            parts.append(take)
            want -= len(take)
            self._buffer = self._buffer[len(take) :]
        out = b"".join(parts)  # the one copy
        self._pos += len(out)
        return out

    def close(self) -> None:
        if self._pieces is not None:
            self._pieces.close()

    def _generate(self) -> Generator[bytes, None, None]:
        yield _member_header("ova.xml", len(self._ova), self._mtime)
        yield self._ova + _pad(len(self._ova))
        data = self._source()
        try:
            for (number, size), block in zip(self._chunks, data):
                if len(block) != size:
                    raise ImageError(
                        f"Disk chunk {number} is {len(block)} bytes, expected {size}.",
                        "The source image changed while it was being streamed; try again.",
                    )
                name = f"{VDI_ID}/{number:08d}"  # stream_vdi.ml: "%s/%08d"
                yield _member_header(name, size, self._mtime)
                yield block + _pad(size)
                # stream_vdi.ml write_block: sprintf "%016LX" (XXH64 seed 0)
                digest = format(xxhash.xxh64(block).intdigest(), "016X").encode()
                yield _member_header(name + ".xxhash", 16, self._mtime)
                yield digest + _pad(16)
        finally:
            close = getattr(data, "close", None)
            if close:
                close()
        yield bytes(2 * BLOCK)


def xva_from_raw(
    spec: VmSpec,
    source: Union[str, Path, Opener],
    size: int,
    version: XvaVersion = XvaVersion(),
) -> XvaStream:
    """Stream the raw disk ``source`` (a path or a function opening it) as an XVA.

    All-zero 1 MiB chunks are left out (first and last kept, as xapi's exporter does) when the
    source is seekable; a first pass finds them, cheaply with SEEK_DATA/SEEK_HOLE.
    """
    if size <= 0 or size % BLOCK:
        raise ImageError(
            f"Disk size {size} is not a positive multiple of {BLOCK} bytes.",
            "Pad the raw disk image to a whole number of sectors.",
        )
    opener: Opener = source if callable(source) else lambda: open(source, "rb")
    every = [(i, min(CHUNK, size - i * CHUNK)) for i in range(-(-size // CHUNK))]
    with opener() as f:
        seekable = f.seekable()
        keep = _nonzero_chunks(f, size) if seekable else set(range(len(every)))
    keep |= {0, len(every) - 1}
    chunks = [c for c in every if c[0] in keep]
    spec = dataclasses.replace(spec, disk_size=size)

    def read_chunks() -> Iterator[bytes]:
        with opener() as f:
            for number, length in chunks:
                if seekable:
                    f.seek(number * CHUNK)
                block = f.read(length)
                yield block + bytes(length - len(block))  # past EOF reads as zeros

    return XvaStream(spec, chunks, read_chunks, version)


def _nonzero_chunks(f: IO[bytes], size: int) -> set[int]:
    candidates = _data_chunks(f, size)
    zero = bytes(CHUNK)
    found = set()
    for number in sorted(candidates):
        f.seek(number * CHUNK)
        block = f.read(CHUNK)
        if block and block != zero[: len(block)]:
            found.add(number)
    return found


def _data_chunks(f: IO[bytes], size: int) -> set[int]:
    """Chunks that overlap allocated extents; every chunk if extents cannot be queried."""
    count = -(-size // CHUNK)
    try:
        fd = f.fileno()
        chunks: set[int] = set()
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            chunks.update(range(start // CHUNK, -(-end // CHUNK)))
            pos = end
        return {c for c in chunks if c < count}
    except (OSError, AttributeError, io.UnsupportedOperation):
        return set(range(count))


# -- reading ---------------------------------------------------------------------------------

_HINT = "Check the file is a complete XVA export (xe vm-export) or rebuild it with xsddkvm."


def _open_tar(path: Path, f: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=f, mode="r|*")
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise ImageError(f"{path}: not an XVA: not a tar archive ({exc}).", _HINT) from None


def _parse_ova(path: Path, data: bytes) -> dict[str, Any]:
    try:
        wrapped = b"<methodResponse><params><param>" + data + b"</param></params></methodResponse>"
        params, _ = xmlrpc.client.loads(wrapped.decode())
        header: Any = params[0]
        version = header["version"]
        objects = header["objects"]
    except Exception as exc:  # any parse failure means the same thing to the user
        raise ImageError(f"{path}: ova.xml is not valid XVA metadata ({exc}).", _HINT) from None
    vsn = int(version.get("export_vsn", 0))
    if vsn > EXPORT_VSN:
        raise ImageError(
            f"{path}: written in a newer export format (export_vsn {vsn}; this tool reads "
            f"up to {EXPORT_VSN}).",
            "Upgrade xsddkvm, or export the VM again from an older host.",
        )
    return {"version": version, "objects": objects}


def _read_ova(path: Path, tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        first = tar.next()
        if first is None:
            raise ImageError(f"{path}: the tar archive is empty.", _HINT)
        if first.name != "ova.xml":
            raise ImageError(
                f"{path}: first member is {first.name!r}, expected 'ova.xml'.",
                "Export the VM with xe vm-export, or write the archive with ova.xml first.",
            )
        member = tar.extractfile(first)
        data = member.read() if member else b""
        if len(data) != first.size:
            raise EOFError
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise ImageError(f"{path}: truncated inside ova.xml.", _HINT) from None
    return _parse_ova(path, data)


def _by_id(objects: list[dict[str, Any]], cls: str) -> dict[str, dict[str, Any]]:
    return {o["id"]: o["snapshot"] for o in objects if o["class"] == cls}


def _header(path: Path, ova: dict[str, Any]) -> XvaHeader:
    objects = ova["objects"]
    vms = list(_by_id(objects, "VM").values())
    if not vms:
        raise ImageError(f"{path}: ova.xml holds no VM.", _HINT)
    vm = vms[0]
    vdis = _streamed_vdis(objects)
    return XvaHeader(
        version={k: str(v) for k, v in ova["version"].items()},
        name_label=str(vm.get("name_label", "")),
        name_description=str(vm.get("name_description", "")),
        memory=int(vm.get("memory_static_max", 0)),
        vcpus=int(vm.get("VCPUs_max", 0)),
        PV_args=str(vm.get("PV_args", "")),
        other_config=dict(vm.get("other_config", {})),
        disk_size=next(iter(vdis.values()), 0),
    )


def _streamed_vdis(objects: list[dict[str, Any]]) -> dict[str, int]:
    """Export id -> virtual_size of each VDI whose data follows (import.ml non_cdrom_vdis)."""
    vdis = _by_id(objects, "VDI")
    disks = [v["VDI"] for v in _by_id(objects, "VBD").values() if v.get("type") != "CD"]
    return {ref: int(vdis[ref].get("virtual_size", 0)) for ref in disks if ref in vdis}


def read_xva_header(path: Union[str, Path]) -> XvaHeader:
    """Read only ``ova.xml``, the first member, and return what the tool needs from it."""
    path = Path(path)
    with open(path, "rb") as f:
        return _header(path, _read_ova(path, _open_tar(path, f)))


_CHUNK_NAME = re.compile(r"^(Ref:\d+)/(\d{8})$")


def validate_xva(path: Union[str, Path], on_progress: Optional[ProgressFn] = None) -> XvaHeader:
    """Check every chunk's checksum and that every disk is complete; raise naming the chunk."""
    path = Path(path)
    total = path.stat().st_size
    with open(path, "rb") as f:
        tar = _open_tar(path, f)
        ova = _read_ova(path, tar)
        sizes = _streamed_vdis(ova["objects"])
        filled = dict.fromkeys(sizes, 0)
        last: dict[str, int] = {}
        first_len: dict[str, int] = {}
        try:
            while True:
                member = tar.next()
                if member is None:
                    break
                found = _CHUNK_NAME.match(member.name)
                if not found or found.group(1) not in sizes:
                    raise ImageError(f"{path}: unexpected member {member.name!r}.", _HINT)
                prefix, number = found.group(1), int(found.group(2))
                if number <= last.get(prefix, -1):
                    raise ImageError(f"{path}: chunk {member.name} is out of order.", _HINT)
                data = _read_member(tar, member)
                digest_member = tar.next()
                if digest_member is None:
                    raise EOFError
                digest = _read_member(tar, digest_member).decode(errors="replace")
                _check_digest(path, member.name, digest_member.name, data, digest)
                first_len.setdefault(prefix, len(data))
                gap = number - last.get(prefix, -1) - 1
                filled[prefix] += first_len[prefix] * gap + len(data)
                last[prefix] = number
                if on_progress:
                    on_progress(f.tell(), total)
        except (tarfile.TarError, EOFError, zlib.error, OSError):
            raise ImageError(f"{path}: truncated after chunk {_last(last)}.", _HINT) from None
        for prefix, size in sizes.items():
            if filled[prefix] < size:
                raise ImageError(
                    f"{path}: disk {prefix} has {filled[prefix]} of {size} bytes; "
                    f"truncated after chunk {_last(last)}.",
                    _HINT,
                )
        return _header(path, ova)


def _last(last: dict[str, int]) -> str:
    return ", ".join(f"{p}/{n:08d}" for p, n in last.items()) or "ova.xml"


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    data = handle.read() if handle else b""
    if len(data) != member.size:
        raise EOFError
    return data


def _check_digest(path: Path, name: str, digest_name: str, data: bytes, digest: str) -> None:
    # stream_vdi.ml recv_all_vdi: the checksum member's extension picks the algorithm
    if digest_name == name + ".xxhash":
        expected = format(xxhash.xxh64(data).intdigest(), "016X")
    elif digest_name == name + ".checksum":
        expected = hashlib.sha1(data).hexdigest()
    else:
        raise ImageError(
            f"{path}: chunk {name} is followed by {digest_name!r}, not its checksum.", _HINT
        )
    if digest != expected:
        raise ImageError(
            f"{path}: checksum mismatch in chunk {name} (file says {digest}, data is {expected}).",
            "The image is corrupt; download or export it again.",
        )
