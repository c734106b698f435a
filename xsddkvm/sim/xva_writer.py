"""The simulator's own XVA writer (xenapi.md §3.1-3.4), used by ``make-image``.

Written apart from the client's writer on purpose: each side's reader checks the other's
writer. Records are full ``records.defaults`` records, as xapi's exporter writes them.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from . import records
from .wire import value as xmlrpc_value

CHUNK = 1024 * 1024  # ocaml/xapi/stream_vdi.ml chunk_size
EXPORT_VSN = 2
ZERO = bytes(CHUNK)


def export_metadata(vm: dict[str, Any], vdi: dict[str, Any], version: dict[str, Any]) -> bytes:
    """``ova.xml`` for one VM with one system disk; ``vm``/``vdi`` override record defaults."""
    vm_rec = {**records.defaults("VM"), **vm, "VBDs": ["Ref:1"], "power_state": "Halted"}
    vbd_rec = {
        **records.defaults("VBD"),
        "VM": "Ref:0", "VDI": "Ref:2", "device": "xvda", "userdevice": "0", "bootable": True,
    }  # fmt: skip
    vdi_rec = {**records.defaults("VDI"), "type": "system", **vdi, "SR": "Ref:3"}
    vdi_rec["VBDs"] = ["Ref:1"]
    sr_rec = {**records.defaults("SR"), "name_label": "Local storage", "VDIs": ["Ref:2"]}
    for rec in (vm_rec, vbd_rec, vdi_rec, sr_rec):
        rec["uuid"] = rec.get("uuid") or ""
    header = {
        "version": {"hostname": "localhost", "date": time.strftime("%Y-%m-%d"), **version,
                    "export_vsn": EXPORT_VSN},
        "objects": [
            {"class": "VM", "id": "Ref:0", "snapshot": vm_rec},
            {"class": "VBD", "id": "Ref:1", "snapshot": vbd_rec},
            {"class": "VDI", "id": "Ref:2", "snapshot": vdi_rec},
            {"class": "SR", "id": "Ref:3", "snapshot": sr_rec},
        ],
    }  # fmt: skip
    return xmlrpc_value(header).encode()


def _add(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    archive.addfile(info, io.BytesIO(data))


def write_xva(
    out: Path, disk: BinaryIO, size: int, vm: dict[str, Any], version: dict[str, Any]
) -> Path:
    """Write ``size`` bytes of ``disk`` as an XVA at ``out``, leaving out all-zero chunks
    except the first and last (stream_vdi.ml send_one)."""
    mtime = int(time.time())
    last = -(-size // CHUNK) - 1
    metadata = export_metadata(vm, {"name_label": "root", "virtual_size": size}, version)
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as archive:
        _add(archive, "ova.xml", metadata, mtime)
        disk.seek(0)
        for number in range(last + 1):
            data = disk.read(min(CHUNK, size - number * CHUNK))
            if 0 < number < last and data == ZERO:
                continue
            name = f"Ref:2/{number:08d}"
            _add(archive, name, data, mtime)
            _add(archive, name + ".xxhash", b"%016X" % xxhash.xxh64(data).intdigest(), mtime)
    return out
