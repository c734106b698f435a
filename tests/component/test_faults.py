"""The fault suite: every fault the simulator injects, through `xsddkvm build`.

Each case states the outcome (recovered or failed), the exact exit code and words the error
must contain; every case must leave nothing on the host and no partial file in the output.
The same table is rendered in docs/faults.md.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_support import leftovers, run_cli, write_playbook

from xsddkvm.exit_codes import ExitCode
from xsddkvm.sim.scenario import load_scenario
from xsddkvm.sim.server import SimServer

# fault knobs -> (exit code, words the error must contain); exit 0 means "recovered"
FAULTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "slow boot": ({"slow_boot_seconds": 1.5}, 0, ""),
    "late IP": ({"late_ip_seconds": 1.5}, 0, ""),
    "session expiry mid-build": ({"session_expiry_calls": 7}, 0, ""),
    "SSH drops while sshd starts": ({"ssh_drops": 2}, 0, ""),
    "console noise": ({"console_noise": True}, 0, ""),
    "upload cut": ({"upload_cut_at_bytes": 200_000}, ExitCode.IMAGE, "import"),
    "corrupted chunk": ({"corrupt_chunk": 0}, ExitCode.IMAGE, "checksum"),
    "SR full": ({"sr_full": True}, ExitCode.STORAGE, "free"),
    "make failure": ({"make_fails": True}, ExitCode.BUILD, "make build-srctarballs failed"),
    "no guest tools": ({"no_guest_tools": True}, ExitCode.GUEST, "guest agent"),
}


def assert_clean(server: SimServer, out: Path) -> None:
    assert leftovers(server) == {}
    if out.exists():
        stray = [p.name for p in out.iterdir() if p.name != "build.log"]
        assert stray == [], f"partial files left in the output directory: {stray}"


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(name: str, sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    knobs, expected, words = FAULTS[name]
    for knob, value in knobs.items():
        setattr(sim.host.scenario.faults, knob, value)
    pb = write_playbook(sim, tmp_path, ddk_xva, timeouts={"ip": 8, "ssh": 20})
    code, _, stderr = run_cli("build", str(pb))
    assert code == expected, stderr[-2000:]
    if expected:
        assert words.lower() in stderr.lower()
        out = tmp_path / "out"
        assert_clean(sim, out)
    else:
        assert (tmp_path / "out" / "helloworld.iso").exists()
        assert leftovers(sim) == {}


def test_wrong_password(
    sim: SimServer, ddk_xva: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    monkeypatch.setenv("XSDDKVM_TEST_HOST_PASSWORD", "not-the-password")
    code, _, stderr = run_cli("build", str(pb))
    assert code == ExitCode.AUTH
    assert "SESSION_AUTHENTICATION_FAILED" in stderr and "password" in stderr
    assert_clean(sim, tmp_path / "out")


def test_certificate_mismatch(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    data = yaml.safe_load(pb.read_text())
    data["host"]["tls_fingerprint"] = "00:" * 31 + "00"
    pb.write_text(yaml.safe_dump(data))
    code, _, stderr = run_cli("build", str(pb))
    assert code == ExitCode.TLS
    assert "fingerprint" in stderr
    assert_clean(sim, tmp_path / "out")


def test_missing_pin_refuses_self_signed(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    data = yaml.safe_load(pb.read_text())
    del data["host"]["tls_fingerprint"]
    pb.write_text(yaml.safe_dump(data))
    code, _, stderr = run_cli("build", str(pb))
    assert code == ExitCode.TLS
    assert "xsddkvm host fingerprint" in stderr
    assert_clean(sim, tmp_path / "out")


def test_host_unreachable(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pb = write_playbook(sim, tmp_path, ddk_xva)
    code, _, stderr = run_cli("build", str(pb), "--host", f"https://127.0.0.1:{port}")
    assert code == ExitCode.HOST_UNREACHABLE
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
        assert code == 0, stderr[-2000:]
        assert leftovers(server) == {}
