"""Verify a supplemental pack locally: ``.iso.md5`` against the ISO, ``metadata.md5`` against
the ``XS-REPOSITORY`` + ``XS-PACKAGES`` read from inside the ISO (ddk.md §4.1)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Optional

import pycdlib

from .errors import ArtifactError


def file_digests(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()  # noqa: S324 - md5 is the pack format's own
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def read_iso_file(iso: Path, name: str) -> Optional[bytes]:
    """A root-level file of an ISO 9660 image (Rock Ridge / Joliet / plain names tried)."""
    image = pycdlib.PyCdlib()
    try:
        image.open(str(iso))
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise ArtifactError(f"{iso} is not a readable ISO 9660 image ({exc}).") from None
    try:
        for kwargs in (
            {"rr_path": f"/{name}"},
            {"joliet_path": f"/{name}"},
            {"iso_path": f"/{name.upper()};1"},
        ):
            out = io.BytesIO()
            try:
                image.get_file_from_iso_fp(out, **kwargs)
                return out.getvalue()
            except pycdlib.pycdlibexception.PyCdlibException:
                continue
        return None
    finally:
        image.close()


def verify_iso_md5(iso: Path, md5_file: Path, actual: Optional[str] = None) -> None:
    """``<pack>.iso.md5`` (md5sum format) against the ISO; ``actual`` if already computed."""
    text = md5_file.read_text(encoding="utf-8", errors="replace").split()
    expected = text[0].lower() if text else ""
    actual = actual or file_digests(iso)[0]
    if expected != actual:
        raise ArtifactError(
            f"{iso.name} does not match {md5_file.name}: md5 {actual}, file says {expected or 'nothing'}.",
            "The ISO was damaged in transfer or rebuilt after its md5 was written; run the build again.",
        )


def verify_metadata_md5(iso: Path, md5_file: Path) -> None:
    repository = read_iso_file(iso, "XS-REPOSITORY")
    packages = read_iso_file(iso, "XS-PACKAGES")
    if repository is None or packages is None:
        raise ArtifactError(
            f"{iso.name} has no XS-REPOSITORY/XS-PACKAGES, but {md5_file.name} exists.",
            "Check that build-iso ran build-supplemental-pack.sh.",
        )
    expected = md5_file.read_text(encoding="utf-8", errors="replace").strip().split()[0].lower()
    actual = hashlib.md5(repository + packages).hexdigest()  # noqa: S324
    if expected != actual:
        raise ArtifactError(
            f"{md5_file.name} says {expected} but XS-REPOSITORY + XS-PACKAGES inside "
            f"{iso.name} hash to {actual}.",
            "The pack's metadata changed after the md5 was written; run the build again.",
        )
