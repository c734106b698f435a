"""The simulator's PUT /import fed by the client's XVA writer (and by hand-made archives)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import tracemalloc
from pathlib import Path
from typing import Any, Optional

import pycdlib
import pytest
import requests

from xsddkvm.image import VmSpec, XvaVersion, open_ddk_iso, xva_from_raw
from xsddkvm.image.xva import ova_xml
from xsddkvm.sim.ddk_image import make_image
from xsddkvm.sim.host import SimHost
from xsddkvm.sim.import_xva import UNAUTHORISED, handle_import
from xsddkvm.sim.scenario import default_scenario

MIB = 1024 * 1024
SPEC = VmSpec(name_label="ddk", memory=2 * 1024 * MIB, vcpus=2, disk_size=0, PV_args="quiet",
              other_config={"xsddkvm": "1"})  # fmt: skip


class Handler:
    """The parts of a BaseHTTPRequestHandler that handle_import uses."""

    def __init__(self, path: str, body: Any, headers: dict[str, str]) -> None:
        self.path = path
        self.headers = http.client.HTTPMessage()
        for key, value in headers.items():
            self.headers[key] = value
        self.rfile = body
        self.wfile = io.BytesIO()
        self.close_connection = False

    @property
    def response(self) -> bytes:
        return self.wfile.getvalue()


@pytest.fixture
def host(tmp_path: Path) -> Any:
    sim = SimHost(default_scenario(), tmp_path / "data", 0)
    yield sim
    sim.close()


@pytest.fixture
def session(host: SimHost) -> str:
    return host.login("root", "xenroot")


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """3 MiB + 4 KiB: data, an all-zero MiB (left out of the XVA), data, a short last chunk."""
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * 4096)
        f.seek(2 * MIB)
        f.write(b"second" * 1000)
        f.seek(3 * MIB)
        f.write(b"\x01" * 4096)
    return path


def put(host: SimHost, session: str, body: Any, length: Optional[int],
        query: str = "", headers: Optional[dict[str, str]] = None) -> tuple[Handler, str]:  # fmt: skip
    all_headers = dict(headers or {})
    if length is not None:
        all_headers["Content-Length"] = str(length)
    handler = Handler(f"/import?session_id={session}{query}", body, all_headers)
    handle_import(host, handler)
    found = [ln for ln in handler.response.split(b"\r\n") if ln.startswith(b"task-id:")]
    return handler, found[0][len(b"task-id:") :].decode() if found else ""


def task(host: SimHost, ref: str) -> dict[str, Any]:
    return host.state.get("task", ref)


def new_vms(host: SimHost) -> list[str]:
    return host.state.find("VM", lambda r: not r["is_control_domain"])


def import_stream(host: SimHost, session: str, stream: Any, query: str = "") -> dict[str, Any]:
    _, ref = put(host, session, stream, len(stream), query)
    return task(host, ref)


def test_good_image_creates_vm_vbd_vdi_with_the_source_bytes(host, session, disk):
    stream = xva_from_raw(SPEC, disk, disk.stat().st_size)
    handler, ref = put(host, session, stream, len(stream))
    assert handler.response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"task-id:{ref}\r\n".encode() in handler.response
    record = task(host, ref)
    assert record["status"] == "success", record["error_info"]
    (vm,) = new_vms(host)
    assert record["result"] == f"<value><array><data><value>{vm}</value></data></array></value>"
    vm_rec = host.state.get("VM", vm)
    assert vm_rec["power_state"] == "Halted"
    assert (vm_rec["name_label"], vm_rec["VCPUs_max"], vm_rec["PV_args"]) == ("ddk", 2, "quiet")
    assert vm_rec["memory_static_max"] == 2 * 1024 * MIB
    assert vm_rec["other_config"]["xsddkvm"] == "1"
    assert vm_rec["other_config"]["import_task"] == ref and vm_rec["other_config"]["mac_seed"]
    (vbd,) = vm_rec["VBDs"]
    vdi = host.state.get("VBD", vbd)["VDI"]
    assert host.state.get("VDI", vdi)["SR"] == host.default_sr()
    assert host.vdi_path(vdi).read_bytes() == disk.read_bytes()


def test_zero_chunks_are_left_out_and_zero_filled_on_import(host, session, disk):
    stream = xva_from_raw(SPEC, disk, disk.stat().st_size)
    four_chunks = 4 * (MIB + 3 * 512) + 2048
    assert len(stream) < four_chunks - MIB  # the all-zero second MiB is not in the archive
    assert import_stream(host, session, stream)["status"] == "success"
    (vm,) = new_vms(host)
    vdi = host.state.get("VBD", host.state.get("VM", vm)["VBDs"][0])["VDI"]
    assert host.vdi_path(vdi).read_bytes()[MIB : 2 * MIB] == bytes(MIB)


def assert_failed_and_clean(host: SimHost, record: dict[str, Any], *error: str) -> None:
    assert record["status"] == "failure"
    assert record["error_info"][: len(error)] == list(error)
    assert new_vms(host) == []
    assert host.state.refs("VDI") == [] and host.state.refs("VBD") == []
    assert host.state.get("SR", host.default_sr())["physical_utilisation"] == 0
    assert list((host.data_dir / "vdis").iterdir()) == []


def test_corrupt_chunk_fault_fails_the_task_and_removes_everything(host, session, disk):
    host.scenario.faults.corrupt_chunk = 1
    record = import_stream(host, session, xva_from_raw(SPEC, disk, disk.stat().st_size))
    assert_failed_and_clean(host, record, "IMPORT_ERROR_SOME_CHECKSUMS_FAILED")


def test_force_imports_despite_a_failed_checksum(host, session, disk):
    host.scenario.faults.corrupt_chunk = 0
    stream = xva_from_raw(SPEC, disk, disk.stat().st_size)
    assert import_stream(host, session, stream, "&force=true")["status"] == "success"


def test_a_flipped_byte_fails_the_checksum(host, session, disk):
    data = bytearray(xva_from_raw(SPEC, disk, disk.stat().st_size).read())
    data[data.index(b"Ref:2/00000000") + 512 + 100] ^= 0xFF  # inside the first data chunk
    record = import_stream(host, session, _Bytes(bytes(data)))
    assert_failed_and_clean(host, record, "IMPORT_ERROR_SOME_CHECKSUMS_FAILED")


class _Bytes(io.BytesIO):
    def __len__(self) -> int:
        return len(self.getbuffer())


def test_body_shorter_than_content_length_is_premature_eof(host, session, disk):
    data = xva_from_raw(SPEC, disk, disk.stat().st_size).read()
    _, ref = put(host, session, io.BytesIO(data[: len(data) // 2]), len(data))
    assert_failed_and_clean(host, task(host, ref), "IMPORT_ERROR_PREMATURE_EOF")


def test_upload_cut_fault_stops_reading_after_n_bytes(host, session, disk):
    host.scenario.faults.upload_cut_at_bytes = 100_000
    stream = xva_from_raw(SPEC, disk, disk.stat().st_size)
    record = import_stream(host, session, stream)
    assert_failed_and_clean(host, record, "IMPORT_ERROR_PREMATURE_EOF")
    assert stream.tell() == 100_000


def test_sr_full_fails_with_sm_error_44(host, session, disk):
    host.scenario.faults.sr_full = True
    record = import_stream(host, session, xva_from_raw(SPEC, disk, disk.stat().st_size))
    assert_failed_and_clean(host, record, "SR_BACKEND_FAILURE_44")


def _tar(members: list[tuple[str, bytes]]) -> _Bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return _Bytes(out.getvalue())


def test_first_member_must_be_ova_xml(host, session):
    record = import_stream(host, session, _tar([("Ref:2/00000000", bytes(512))]))
    assert_failed_and_clean(
        host, record, "IMPORT_ERROR_UNEXPECTED_FILE", "ova.xml", "Ref:2/00000000"
    )


def test_an_xva_from_a_newer_xapi_is_refused(host, session):
    ova = ova_xml(SPEC, XvaVersion(xapi_major=99, xapi_minor=0))
    record = import_stream(host, session, _tar([("ova.xml", ova)]))
    assert_failed_and_clean(host, record, "IMPORT_INCOMPATIBLE_VERSION")


def test_sha1_checksum_members_are_accepted(host, session):
    chunk = b"x" * MIB
    spec = VmSpec(name_label="old", memory=MIB, vcpus=1, disk_size=MIB)
    body = _tar([("ova.xml", ova_xml(spec, XvaVersion())), ("Ref:2/00000000", chunk),
                 ("Ref:2/00000000.checksum", hashlib.sha1(chunk).hexdigest().encode())])  # fmt: skip
    assert import_stream(host, session, body)["status"] == "success"


def test_gzip_compressed_xva_is_accepted(host, session, disk):
    data = gzip.compress(xva_from_raw(SPEC, disk, disk.stat().st_size).read())
    assert import_stream(host, session, _Bytes(data))["status"] == "success"


def test_chunked_upload_is_refused_with_403(host, session, disk):
    handler, _ = put(host, session, io.BytesIO(b""), None,
                     headers={"Transfer-Encoding": "chunked"})  # fmt: skip
    assert handler.response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    (ref,) = host.state.refs("task")
    assert task(host, ref)["error_info"] == ["IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"]


def test_missing_content_length_is_refused_with_411(host, session):
    given = host.create_task("import")
    handler, _ = put(host, session, io.BytesIO(b""), None, f"&task_id={given}")
    assert handler.response.startswith(b"HTTP/1.1 411 ")
    assert task(host, given)["status"] == "failure"


def test_bad_session_gets_the_exact_401(host, disk):
    handler, _ = put(host, "OpaqueRef:nope", io.BytesIO(b""), 0)
    assert handler.response == UNAUTHORISED
    assert host.state.refs("task") == []


def test_session_and_task_from_cookie_and_sr_by_uuid(host, session, disk):
    given = host.create_task("import")
    sr_uuid = host.state.get("SR", host.default_sr())["uuid"]
    stream = xva_from_raw(SPEC, disk, disk.stat().st_size)
    handler = Handler(f"/import?session_id=bad&sr_uuid={sr_uuid}", stream,
                      {"Cookie": f"session_id={session}; task_id={given}",
                       "Content-Length": str(len(stream))})  # fmt: skip
    handle_import(host, handler)
    assert f"task-id:{given}".encode() in handler.response
    assert task(host, given)["status"] == "success"


def test_over_real_http_the_header_comes_before_the_body(host, session, disk):
    class Server(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
            handle_import(host, self)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        stream = xva_from_raw(SPEC, disk, disk.stat().st_size)
        url = f"http://127.0.0.1:{server.server_port}/import?session_id={session}"
        reply = requests.put(url, data=stream, timeout=30)
        assert reply.status_code == 200
        ref = reply.headers["task-id"]
        assert task(host, ref)["status"] == "success"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_streaming_a_256_mib_sparse_image_keeps_memory_flat(host, session, tmp_path):
    path = tmp_path / "big.raw"
    with open(path, "wb") as f:
        f.write(b"boot" * 1024)
        f.truncate(256 * MIB)
    tracemalloc.start()
    try:
        stream = xva_from_raw(SPEC, path, 256 * MIB)
        record = import_stream(host, session, stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record["status"] == "success"
    assert peak < 20 * MIB


def _iso_disk(path: Path) -> bytes:
    """The disk of a DDK ISO, read independently of the client: gunzip every chunk in order."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        names = sorted(
            c.rock_ridge.name().decode()
            for c in iso.list_children(rr_path="/ddk/xvda")
            if c.rock_ridge and c.rock_ridge.name().startswith(b"chunk-")
        )
        disk = b""
        for name in names:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/ddk/xvda/{name}")
            disk += gzip.decompress(out.getvalue())
        return disk
    finally:
        iso.close()


def test_ddk_iso_converts_byte_exact_through_import(host, session, tmp_path):
    image = make_image(tmp_path / "ddk.iso", form="iso", chunk_size=300_000)
    original = _iso_disk(image)
    with open_ddk_iso(image) as ddk:
        assert len(ddk._files) > 1  # several gzip chunks
        stream = ddk.to_xva()
        produced = len(stream)
        record = import_stream(host, session, stream)
        assert stream.tell() == produced
    assert record["status"] == "success", record["error_info"]
    (vm,) = new_vms(host)
    assert host.state.get("VM", vm)["name_label"] == "XenServer DDK 8.2.1-58"
    vdi = host.state.get("VBD", host.state.get("VM", vm)["VBDs"][0])["VDI"]
    assert host.vdi_path(vdi).read_bytes() == original


def test_ddk_iso_conversion_keeps_memory_flat(host, session, tmp_path):
    image = make_image(tmp_path / "big.iso", form="iso", pad_to=64 * MIB, chunk_size=20 * MIB)
    tracemalloc.start()
    try:
        with open_ddk_iso(image) as ddk:
            record = import_stream(host, session, ddk.to_xva())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record["status"] == "success", record["error_info"]
    assert peak < 20 * MIB
