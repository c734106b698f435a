"""`xsddkvm install`: an update pack through pool_update on the simulator; a legacy pack's
dom0 commands; the simulator's ``PUT /import_raw_vdi``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pycdlib
import pytest
import requests
import XenAPI
from cli_support import PASSWORD_ENV, json_events, leftovers, run_cli

from xsddkvm.exit_codes import ExitCode

UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
UPDATE_XML = (
    f'<update name-label="helloworld" name-description="Hello world driver" version="1.0" '
    f'uuid="{UUID}" installation-size="1048576" after-apply-guidance="restartHost"/>'
).encode()
REPOSITORY = (
    b'<repository originator="example.com" name="helloworld" product="XenServer" version="1.0">'
    b"<description>helloworld driver</description></repository>"
)


def write_iso(path: Path, members: dict[str, bytes]) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09")
    for name, data in members.items():
        iso.add_fp(io.BytesIO(data), len(data), "/" + name, rr_name=name, joliet_path="/" + name)
    iso.write(str(path))
    iso.close()
    return path


def host_args(sim) -> list[str]:
    return ["--host", sim.url, "--password-env", PASSWORD_ENV, "--tls-fingerprint", sim.fingerprint]


def install(sim, iso: Path, *extra: str) -> tuple[int, list[dict]]:
    code, stdout, _ = run_cli("install", str(iso), *host_args(sim), "--json", *extra)
    return code, json_events(stdout)


def update_pack(tmp_path: Path, xml: bytes = UPDATE_XML) -> Path:
    rpm = b"not really an rpm" * 100
    return write_iso(tmp_path / "helloworld.iso", {"update.xml": xml, "helloworld.rpm": rpm})


def test_update_pack_installs_and_shows_in_host_info(sim, tmp_path: Path) -> None:
    code, events = install(sim, update_pack(tmp_path))
    assert code == 0, events
    result = events[-1]
    assert result["event"] == "result" and result["command"] == "install"
    (host,) = result["data"]["hosts"]
    assert host["status"] == "applied" and result["data"]["guidance"] == ["restartHost"]
    assert any(e["event"] == "progress" and e["what"] == "upload" for e in events)
    assert any(e["event"] == "notice" and "restart the host" in e["message"] for e in events)
    code, stdout, _ = run_cli("host", "info", sim.url, *host_args(sim)[2:], "--json")
    assert code == 0 and "helloworld" in json.loads(stdout)["updates"]
    found = leftovers(sim)
    assert [u["name_label"] for u in found.pop("pool_update")] == ["helloworld"]
    assert found == {}  # the upload VDI and the task are gone


def test_applying_twice_reports_already_applied(sim, tmp_path: Path) -> None:
    iso = update_pack(tmp_path)
    assert install(sim, iso)[0] == 0
    code, events = install(sim, iso)
    assert code == 0, events
    (host,) = events[-1]["data"]["hosts"]
    assert host["status"] == "already-applied" and host["code"] == "UPDATE_ALREADY_APPLIED"
    assert "already installed on this host" in host["detail"]
    found = leftovers(sim)
    assert len(found.pop("pool_update")) == 1 and found == {}


def test_an_update_the_host_refuses_is_explained_and_removed(sim, tmp_path: Path) -> None:
    no_version = UPDATE_XML.replace(b' version="1.0"', b"")
    code, events = install(sim, update_pack(tmp_path, no_version))
    assert code == ExitCode.INSTALL
    error = events[-1]
    assert error["xapi_code"] == "INVALID_UPDATE" and "missing <version>" in error["message"]
    assert leftovers(sim) == {}


def test_unknown_host_names_the_pool_members(sim, tmp_path: Path) -> None:
    code, events = install(sim, update_pack(tmp_path), "--hosts", "nosuch")
    assert code == ExitCode.CONFIG
    assert "nosuch" in events[-1]["message"] and leftovers(sim) == {}


def test_legacy_pack_gets_the_dom0_commands(sim, tmp_path: Path) -> None:
    iso = write_iso(tmp_path / "legacy.iso", {"XS-REPOSITORY": REPOSITORY, "XS-PACKAGES": b""})
    code, stdout, _ = run_cli("install", str(iso), *host_args(sim))
    assert code == 0
    assert "mount -o loop,ro /tmp/legacy.iso /mnt && cd /mnt && ./install" in stdout
    assert f"scp {iso} root@{urlsplit(sim.url).hostname}:/tmp/legacy.iso" in stdout
    assert leftovers(sim) == {}


@pytest.fixture()
def xapi(sim) -> Iterator[Any]:
    session = XenAPI.Session(sim.url, ignore_ssl=True)
    session.xenapi.login_with_password(sim.username, sim.password, "1.1", "test")
    try:
        yield session
    finally:
        session.xenapi.session.logout()


def _put(sim, query: str, data: bytes, session: str = "", **headers: str) -> requests.Response:
    return requests.put(
        f"{sim.url}/import_raw_vdi?{query}",
        data=data,
        cookies={"session_id": session} if session else {},
        headers=headers,
        verify=False,
        timeout=30,
    )


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_import_raw_vdi_writes_the_body_into_the_vdi(sim, xapi) -> None:
    session, xapi = xapi._session, xapi.xenapi
    vdi = xapi.VDI.create({
        "SR": sim.host.sr, "virtual_size": "4096", "type": "user", "sharable": False,
        "read_only": False, "other_config": {},
    })  # fmt: skip
    assert _put(sim, f"vdi={vdi}&format=raw", b"").status_code == 401  # no session
    task = xapi.task.create("t", "")
    assert _put(sim, f"vdi={vdi}&task_id={task}", b"hello", session).status_code == 200
    assert xapi.task.get_status(task) == "success"
    assert sim.host.vdi_path(vdi).read_bytes()[:6] == b"hello\0"
    task = xapi.task.create("t", "")
    _put(sim, f"vdi={vdi}&task_id={task}", b"y" * 5000, session)
    assert xapi.task.get_error_info(task)[0] == "VDI_IO_ERROR"
    task = xapi.task.create("t", "")
    assert _put(sim, f"vdi=OpaqueRef:nope&task_id={task}", b"", session).status_code == 404
    assert xapi.task.get_error_info(task) == ["HANDLE_INVALID", "VDI", "OpaqueRef:nope"]
