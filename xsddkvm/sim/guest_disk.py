"""A simulated guest's root disk: a tar archive of its filesystem at the start of the VDI file.

Layout (docs/architecture.md, "Guest disks and sandboxes"): the tar archive, then zeros up to a
multiple of 1 MiB. ``tarfile`` stops at the end-of-archive blocks, so the padding is ignored.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

import paramiko

MIB = 1024 * 1024
HOST_KEY = "etc/ssh/ssh_host_rsa_key"


class DiskError(Exception):
    """The disk cannot be booted or written back; the message is what the console shows."""


def extract(vdi_file: Path, dest: Path) -> None:
    """Unpack the guest filesystem at the start of ``vdi_file`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with open(vdi_file, "rb") as disk, tarfile.open(fileobj=disk, mode="r:") as archive:
            kwargs: dict[str, Any] = {}
            if hasattr(tarfile, "tar_filter"):
                # "tar" keeps absolute symlinks (a root filesystem has them) but refuses members
                # that would land outside dest; "data" would refuse the symlinks.
                kwargs["filter"] = "tar"
            archive.extractall(dest, **kwargs)
    except (OSError, tarfile.TarError) as exc:
        raise DiskError(f"VFS: Unable to mount root fs on unknown-block(202,1) ({exc})") from exc


def persist(src: Path, vdi_file: Path, virtual_size: int) -> None:
    """Write ``src`` back into ``vdi_file`` as a tar archive padded with zeros to 1 MiB.

    The old disk is kept (and DiskError raised) if the archive would not fit in
    ``virtual_size``. The file keeps at least its previous length, sparsely.
    """
    tmp = vdi_file.with_name(vdi_file.name + ".persist")
    try:
        with open(tmp, "wb") as disk:
            with tarfile.open(fileobj=disk, mode="w:", format=tarfile.GNU_FORMAT) as archive:
                for child in sorted(src.iterdir()):
                    archive.add(str(child), arcname=child.name)
            used = disk.tell()
            padded = -(-used // MIB) * MIB
            if padded > virtual_size:
                raise DiskError(
                    f"the guest filesystem needs {padded} bytes but the disk has {virtual_size}"
                )
            old_size = vdi_file.stat().st_size if vdi_file.exists() else 0
            disk.truncate(max(padded, old_size))
        os.replace(tmp, vdi_file)
    finally:
        tmp.unlink(missing_ok=True)


def host_key(root: Path) -> paramiko.RSAKey:
    """The guest's RSA host key, generated (2048 bits, OpenSSH .pub beside it) on first boot."""
    path = root / HOST_KEY
    if path.exists():
        return paramiko.RSAKey.from_private_key_file(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(path))
    path.chmod(0o600)
    pub = path.with_name(path.name + ".pub")
    pub.write_text(f"{key.get_name()} {key.get_base64()} root@ddk\n")
    return key
