"""A pool member that cannot reach the SR redirects /import to the master, as xapi does."""

from __future__ import annotations

from pathlib import Path

import requests
import yaml

from xsddkvm.image.xva import VmSpec, xva_from_raw
from xsddkvm.secrets import Secret
from xsddkvm.sim.scenario import load_scenario
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi.imports import import_vm
from xsddkvm.xapi.session import XapiSession
from xsddkvm.xapi.tls import TlsSettings


def two_host_pool(tmp_path: Path) -> SimServer:
    path = tmp_path / "pool.yml"
    path.write_text(yaml.safe_dump({"pool": {"hosts": [{"name": "master"}, {"name": "member"}]}}))
    return SimServer(load_scenario(path))


def test_put_import_on_a_member_answers_302_to_the_master(tmp_path: Path) -> None:
    with two_host_pool(tmp_path) as server:
        xs = XapiSession(
            server.url, server.username, Secret(server.password), TlsSettings(insecure=True)
        ).login()
        response = requests.put(
            f"{server.urls[1]}/import?task_id=OpaqueRef:x",
            data=b"",
            cookies={"session_id": xs.handle},
            verify=False,
            allow_redirects=False,
        )
        assert response.status_code == 302
        assert response.headers["Location"] == f"{server.url}/import?task_id=OpaqueRef:x"
        xs.logout()
        assert not any(server.host.inspect()["task"])


def test_the_client_uploads_to_a_host_that_can_reach_the_sr(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(b"\x01" * (1 << 20))
    spec = VmSpec(name_label="redirected", memory=1 << 29, vcpus=1, disk_size=1 << 20)
    with two_host_pool(tmp_path) as server:
        xs = XapiSession(
            server.url, server.username, Secret(server.password), TlsSettings(insecure=True)
        ).login()
        xs.url = server.urls[1]  # as if the client talked to the member: no 302 on the way
        sr = xs.api.pool.get_default_SR(xs.api.pool.get_all()[0])
        vm = import_vm(
            xs, lambda: xva_from_raw(spec, disk, 1 << 20), sr=sr, timeout=60,
            on_progress=lambda _done, _total: None,
        )  # fmt: skip
        assert xs.api.VM.get_name_label(vm) == "redirected"
        puts = [t for t in server.host.inspect()["task"] if t["name_label"] == "VM import"]
        assert puts == []  # the client's own task was used: no request reached the member
