"""Reading a Citrix-layout DDK ISO in place: identity, stream length, and the errors."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pycdlib
import pytest

from xsddkvm.errors import ImageError
from xsddkvm.image import open_ddk_iso
from xsddkvm.sim.ddk_image import DdkIdentity, appliance_xml, make_image

MIB = 1024 * 1024


def build_iso(path: Path, files: dict[str, bytes]) -> Path:
    """An ISO with Rock Ridge names holding ``files`` (paths under /)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, rock_ridge="1.09")
    made: set[str] = set()
    for name, data in files.items():
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts)):
            directory = "/" + "/".join(parts[:depth])
            if directory not in made:
                made.add(directory)
                iso.add_directory(directory, rr_name=parts[depth - 1])
        iso.add_fp(io.BytesIO(data), len(data), "/" + name.strip("/"), rr_name=parts[-1])
    iso.write(str(path))
    iso.close()
    return path


def ddk_files(disk: bytes, chunk: int) -> dict[str, bytes]:
    files = {"ddk/ova.xml": appliance_xml(DdkIdentity(), len(disk))}
    for number, start in enumerate(range(0, len(disk), chunk)):
        files[f"ddk/xvda/chunk-{number:09d}.gz"] = gzip.compress(disk[start : start + chunk])
    return files


def test_identity_and_length_come_from_ova_xml_and_gzip_trailers(tmp_path):
    image = make_image(tmp_path / "ddk.iso", form="iso", product_version="7.1.2",
                       build_number="999", chunk_size=400_000)  # fmt: skip
    with open_ddk_iso(image) as ddk:
        assert (ddk.product_version, ddk.build_number) == ("7.1.2", "999")
        assert ddk.spec.name_label == "XenServer DDK 7.1.2-999"
        assert (ddk.spec.memory, ddk.spec.vcpus) == (2 * 1024 * MIB, 1)
        assert ddk.spec.PV_args == "root=/dev/xvda1 ro"
        stream = ddk.to_xva()
        expected = len(stream)
        produced = sum(len(b) for b in iter(lambda: stream.read(65536), b""))
    assert produced == expected


def test_not_an_iso(tmp_path):
    path = tmp_path / "ddk.iso"
    path.write_bytes(b"\0" * 100_000)
    with pytest.raises(ImageError, match="ddk.iso: not an ISO 9660 image"):
        open_ddk_iso(path)


def test_iso_without_ddk_directory(tmp_path):
    path = build_iso(tmp_path / "pack.iso", {"XS-REPOSITORY": b"<repository/>"})
    with pytest.raises(ImageError, match="pack.iso: no ddk/ova.xml") as caught:
        open_ddk_iso(path)
    assert "DDK ISO" in (caught.value.hint or "")


def test_wrong_appliance_version(tmp_path):
    files = ddk_files(bytes(MIB), MIB)
    files["ddk/ova.xml"] = files["ddk/ova.xml"].replace(b'version="0.1"', b'version="0.2"')
    with pytest.raises(ImageError, match=r"expected <appliance version=\"0.1\">"):
        open_ddk_iso(build_iso(tmp_path / "ddk.iso", files))


def test_missing_chunk_in_the_middle(tmp_path):
    files = ddk_files(bytes(3 * MIB), MIB)
    del files["ddk/xvda/chunk-000000001.gz"]
    with pytest.raises(ImageError, match="missing chunk ddk/xvda/chunk-000000001.gz"):
        open_ddk_iso(build_iso(tmp_path / "ddk.iso", files))


def test_missing_last_chunk_is_caught_by_the_declared_size(tmp_path):
    files = ddk_files(bytes(3 * MIB), MIB)
    del files["ddk/xvda/chunk-000000002.gz"]
    with pytest.raises(ImageError, match="a chunk is missing or corrupt"):
        open_ddk_iso(build_iso(tmp_path / "ddk.iso", files))


def test_corrupt_gzip_is_reported_while_streaming(tmp_path):
    disk = bytes(range(256)) * 8192  # 2 MiB, not very compressible
    files = ddk_files(disk, MIB)
    broken = bytearray(files["ddk/xvda/chunk-000000001.gz"])
    broken[len(broken) // 2] ^= 0xFF
    files["ddk/xvda/chunk-000000001.gz"] = bytes(broken)
    with open_ddk_iso(build_iso(tmp_path / "ddk.iso", files)) as ddk:
        stream = ddk.to_xva()
        with pytest.raises(ImageError, match="chunk-000000001.gz is corrupt"):
            while stream.read(MIB):
                pass
