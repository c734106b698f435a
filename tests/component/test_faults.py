"""The fault suite: every fault the simulator injects, through `xsddkvm build`.

Each case states the outcome (recovered or failed), the exact exit code and words the error
must contain; every case must leave nothing on the host and no partial file in the output.
The cases live in fault_table.py, which also renders docs/faults.md.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from cli_support import REPO, leftovers, run_cli, write_playbook
from fault_table import FAULTS, KNOB_FAULTS, render

from xsddkvm.sim.scenario import load_scenario
from xsddkvm.sim.server import SimServer


def assert_clean(server: SimServer, out: Path) -> None:
    assert leftovers(server) == {}
    if out.exists():
        stray = [p.name for p in out.iterdir() if p.name != "build.log"]
        assert stray == [], f"partial files left in the output directory: {stray}"


def test_docs_fault_table_is_current() -> None:
    page = REPO / "docs" / "faults.md"
    assert page.read_text() == render(), (
        "docs/faults.md is stale: run `python tests/component/fault_table.py > docs/faults.md`"
    )


def expect(name: str, code: int, stderr: str) -> None:
    """The exit code and words the fault table promises for ``name``."""
    fault = FAULTS[name]
    assert code == fault.exit_code, stderr[-2000:]
    assert fault.words.lower() in stderr.lower()


@pytest.mark.parametrize("name", KNOB_FAULTS)
def test_fault(name: str, sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    for knob, value in FAULTS[name].knobs.items():
        setattr(sim.host.scenario.faults, knob, value)
    pb = write_playbook(sim, tmp_path, ddk_xva, timeouts={"ip": 8, "ssh": 20})
    code, _, stderr = run_cli("build", str(pb))
    expect(name, code, stderr)
    if code:
        assert_clean(sim, tmp_path / "out")
    else:
        assert (tmp_path / "out" / "helloworld.iso").exists()
        assert leftovers(sim) == {}


def test_wrong_password(
    sim: SimServer, ddk_xva: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    monkeypatch.setenv("XSDDKVM_TEST_HOST_PASSWORD", "not-the-password")
    code, _, stderr = run_cli("build", str(pb))
    expect("wrong password", code, stderr)
    assert "password" in stderr
    assert_clean(sim, tmp_path / "out")


def test_certificate_mismatch(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    data = yaml.safe_load(pb.read_text())
    data["host"]["tls_fingerprint"] = "00:" * 31 + "00"
    pb.write_text(yaml.safe_dump(data))
    code, _, stderr = run_cli("build", str(pb))
    expect("certificate mismatch", code, stderr)
    assert_clean(sim, tmp_path / "out")


def test_missing_pin_refuses_self_signed(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    data = yaml.safe_load(pb.read_text())
    del data["host"]["tls_fingerprint"]
    pb.write_text(yaml.safe_dump(data))
    code, _, stderr = run_cli("build", str(pb))
    expect("missing pin, self-signed certificate", code, stderr)
    assert_clean(sim, tmp_path / "out")


def test_host_unreachable(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pb = write_playbook(sim, tmp_path, ddk_xva)
    code, _, stderr = run_cli("build", str(pb), "--host", f"https://127.0.0.1:{port}")
    expect("host unreachable", code, stderr)
    assert f"127.0.0.1:{port}" in stderr


def test_host_is_slave_follows_the_master(
    ddk_xva: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario_file = tmp_path / "pool.yml"
    scenario_file.write_text(
        yaml.safe_dump({"pool": {"hosts": [{"name": "master"}, {"name": "slave"}]}})
    )
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with SimServer(load_scenario(scenario_file)) as server:
        monkeypatch.setenv("XSDDKVM_TEST_HOST_PASSWORD", server.password)
        pb = write_playbook(server, tmp_path, ddk_xva)
        code, _, stderr = run_cli("build", str(pb), "--host", server.urls[1])
        expect("host is a pool member", code, stderr)
        assert leftovers(server) == {}
