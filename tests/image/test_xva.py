"""The client's XVA writer and readers, and the simulator's writer read back by the client."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import xxhash

from xsddkvm.errors import ImageError
from xsddkvm.image import VmSpec, XvaVersion, read_xva_header, validate_xva, xva_from_raw
from xsddkvm.image.xva import ova_xml
from xsddkvm.sim.ddk_image import make_image

MIB = 1024 * 1024
SPEC = VmSpec(name_label="ddk", memory=512 * MIB, vcpus=1, disk_size=0, PV_args="ro")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.write(b"A" * 1000)
        f.truncate(3 * MIB)
        f.seek(3 * MIB - 10)
        f.write(b"Z" * 10)
    return path


def write(stream, path: Path) -> Path:
    with open(path, "wb") as f:
        while block := stream.read(100_000):
            f.write(block)
    return path


def test_length_is_known_up_front_and_exact(raw, tmp_path):
    stream = xva_from_raw(SPEC, raw, 3 * MIB)
    length = len(stream)
    out = write(stream, tmp_path / "x.xva")
    assert out.stat().st_size == length == stream.tell()


def test_layout_is_ova_xml_then_chunk_checksum_pairs(raw, tmp_path):
    out = write(xva_from_raw(SPEC, raw, 3 * MIB), tmp_path / "x.xva")
    with tarfile.open(out) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        # the all-zero middle chunk is left out; first and last are always kept
        assert names == ["ova.xml", "Ref:2/00000000", "Ref:2/00000000.xxhash",
                         "Ref:2/00000002", "Ref:2/00000002.xxhash"]  # fmt: skip
        assert all(isinstance(m.mtime, int) for m in members)
        data = archive.extractfile("Ref:2/00000002").read()  # type: ignore[union-attr]
        digest = archive.extractfile("Ref:2/00000002.xxhash").read()  # type: ignore[union-attr]
    assert digest == format(xxhash.xxh64(data).intdigest(), "016X").encode()
    assert out.read_bytes()[257:263] == b"ustar\x00"  # USTAR, no PAX header first


def test_header_reader_returns_the_vm_essentials(raw, tmp_path):
    out = write(xva_from_raw(SPEC, raw, 3 * MIB, XvaVersion(build_number="58")), tmp_path / "x")
    header = read_xva_header(out)
    assert (header.name_label, header.memory, header.vcpus) == ("ddk", 512 * MIB, 1)
    assert (header.PV_args, header.disk_size) == ("ro", 3 * MIB)
    assert header.version["export_vsn"] == "2" and header.version["build_number"] == "58"
    assert validate_xva(out) == header


def test_validate_names_the_corrupt_chunk(raw, tmp_path):
    data = bytearray(xva_from_raw(SPEC, raw, 3 * MIB).read())
    data[data.index(b"Ref:2/00000002\x00") + 512 + 5] ^= 1
    bad = tmp_path / "bad.xva"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"bad.xva: checksum mismatch in chunk Ref:2/00000002"):
        validate_xva(bad)


def test_validate_reports_a_truncated_file(raw, tmp_path):
    data = xva_from_raw(SPEC, raw, 3 * MIB).read()
    cut = tmp_path / "cut.xva"
    cut.write_bytes(data[: data.index(b"Ref:2/00000002\x00")])
    with pytest.raises(ImageError, match="truncated"):
        validate_xva(cut)


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a tar at all" * 100, "not a tar archive"),
        ([("disk.img", b"x")], "first member is 'disk.img', expected 'ova.xml'"),
        (
            [
                (
                    "ova.xml",
                    ova_xml(SPEC, XvaVersion()).replace(
                        b"<value>2</value></member></struct>", b"<value>3</value></member></struct>"
                    ),
                )
            ],
            "newer export format",
        ),  # fmt: skip
    ],
)
def test_header_reader_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.xva"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _tar(path, content)
    with pytest.raises(ImageError, match=message) as caught:
        read_xva_header(path)
    assert str(path) in caught.value.message and caught.value.hint


def test_header_reader_reports_truncation_inside_ova_xml(tmp_path):
    full = _tar(tmp_path / "full.xva", [("ova.xml", ova_xml(SPEC, XvaVersion()))]).read_bytes()
    cut = tmp_path / "cut.xva"
    cut.write_bytes(full[:700])
    with pytest.raises(ImageError, match="truncated inside ova.xml"):
        read_xva_header(cut)


def test_simulator_image_reads_back_with_the_client_reader(tmp_path):
    image = make_image(tmp_path / "ddk.xva", product_version="7.1.0", build_number="1234")
    header = validate_xva(image)
    assert header.name_label == "XenServer DDK 7.1.0-1234"
    assert (header.memory, header.vcpus, header.PV_args) == (2 * 1024 * MIB, 1, "")
    assert header.version["product_version"] == "7.1.0"
    assert header.disk_size % MIB == 0


def test_sparse_padded_simulator_image_stays_small(tmp_path):
    image = make_image(tmp_path / "big.xva", pad_to=256 * MIB)
    assert image.stat().st_size < 4 * MIB
    assert validate_xva(image).disk_size == 256 * MIB
