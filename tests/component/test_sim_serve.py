"""`xsddkvm sim serve` in its own process, driven like a remote host; `sim inspect|hotfix`."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import XenAPI
from cli_support import PASSWORD_ENV, REPO, run_cli, write_playbook

from xsddkvm.exit_codes import ExitCode
from xsddkvm.sim.server import SimServer

SERVE_PASSWORD = "served-sim-pw-4821"
SIM_ENV = "XSDDKVM_SIM_PASSWORD"  # what `sim serve` and `sim inspect|hotfix` read by default


@dataclass
class ServedSim:
    """A `python -m xsddkvm sim serve` child and what it printed (enough for write_playbook)."""

    proc: subprocess.Popen[str]
    url: str
    fingerprint: str
    ssh_port: int
    temp: Path  # its TMPDIR: the server's data dir is made in here

    @property
    def data_dirs(self) -> list[Path]:
        return sorted(self.temp.glob("xsddkvm-sim-*"))


def _read_banner(proc: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    """The ``key: value`` lines `sim serve` prints before ``Serving until Ctrl-C.``."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    banner: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"sim serve printed no banner in {timeout}s: {banner}") from None
        if line == "Serving until Ctrl-C.":
            return banner
        key, _, value = line.partition(": ")
        banner[key] = value


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedSim]:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(temp),
        SIM_ENV: SERVE_PASSWORD,
        "XDG_DATA_HOME": str(tmp_path / "xdg-server"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "xsddkvm", "sim", "serve", "--listen", "127.0.0.1:0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = _read_banner(proc, timeout=60)
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-client"))
        monkeypatch.setenv(SIM_ENV, SERVE_PASSWORD)
        monkeypatch.setenv(PASSWORD_ENV, SERVE_PASSWORD)
        yield ServedSim(
            proc, banner["url"], banner["fingerprint"], int(banner["guest ssh port"]), temp
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _as_server(served: ServedSim) -> SimpleNamespace:
    """What write_playbook reads of a server, from the child's banner."""
    guests = SimpleNamespace(ssh_port=served.ssh_port)
    return SimpleNamespace(
        url=served.url, fingerprint=served.fingerprint, host=SimpleNamespace(guests=guests)
    )


def _host_info(served: ServedSim) -> dict[str, str]:
    code, stdout, stderr = run_cli(
        "host", "info", served.url, "--tls-fingerprint", served.fingerprint,
        "--password-env", SIM_ENV,
    )  # fmt: skip
    assert code == 0, stderr
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def test_served_simulator_builds_inspects_hotfixes_and_stops_clean(
    served: ServedSim, ddk_xva: Path, tmp_path: Path
) -> None:
    playbook = write_playbook(_as_server(served), tmp_path, ddk_xva)  # type: ignore[arg-type,unused-ignore]
    code, stdout, _ = run_cli("build", str(playbook), "--json")
    assert code == 0, stdout[-3000:]
    out = tmp_path / "out"
    subprocess.run(["md5sum", "-c", "helloworld.iso.md5"], cwd=out, check=True, capture_output=True)

    # Nothing the build created is left on the other process's host.
    code, stdout, stderr = run_cli(
        "sim", "inspect", served.url, "--fingerprint", served.fingerprint
    )
    assert (code, stdout.strip()) == (0, "Nothing left: no VM, VDI, VBD, VIF, task or session.")
    code, stdout, _ = run_cli(
        "sim", "inspect", served.url, "--fingerprint", served.fingerprint, "--json"
    )
    assert code == 0 and {cls: objs for cls, objs in json.loads(stdout).items() if objs} == {}

    before = _host_info(served)
    assert (before["linux"], before["updates"]) == ("4.19.0+1", "none")
    code, stdout, stderr = run_cli("sim", "hotfix", served.url, "--insecure", "--linux", "4.19.0+2")
    assert (code, stdout.strip()) == (0, "Applied XS821E001."), stderr
    assert "TLS verification is off" in stderr
    after = _host_info(served)
    assert (after["linux"], after["updates"]) == ("4.19.0+2", "XS821E001")
    assert after["build_number"] == before["build_number"] and after["digest"] != before["digest"]

    # Ctrl-C stops the server and removes its data (sandboxes, VDIs, certificate).
    assert len(served.data_dirs) == 1
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(timeout=30) == ExitCode.INTERRUPTED
    assert served.data_dirs == []


def test_inspect_lists_what_a_client_left_but_not_its_own_session(sim: SimServer) -> None:
    xs = XenAPI.Session(sim.url, ignore_ssl=True)
    xs.xenapi.login_with_password(sim.username, sim.password, "1.0", "leaky-client")
    task = xs.xenapi.task.create("leaked task", "")
    args = ("--fingerprint", sim.fingerprint, "--password-env", PASSWORD_ENV)
    code, stdout, stderr = run_cli("sim", "inspect", sim.url, *args, "--json")
    assert code == 0, stderr
    found = {cls: objs for cls, objs in json.loads(stdout).items() if objs}
    assert set(found) == {"task", "session"}
    assert [t["ref"] for t in found["task"]] == [task]
    assert [s["ref"] for s in found["session"]] == [xs.handle]
    code, stdout, _ = run_cli("sim", "inspect", sim.url, *args)
    assert f"task {xs.xenapi.task.get_uuid(task)} leaked task ({task})" in stdout.splitlines()
    xs.xenapi.session.logout()


def test_hotfix_fields_are_checked_on_the_wire(sim: SimServer) -> None:
    xs = XenAPI.Session(sim.url, ignore_ssl=True)
    xs.xenapi.login_with_password(sim.username, sim.password, "1.0", "tests")
    try:
        with pytest.raises(XenAPI.Failure) as bad:
            xs.xenapi.sim.hotfix({"kernel": "5.0"})
        assert bad.value.details == ["INVALID_VALUE", "kernel", "5.0"]
        ref = xs.xenapi.sim.hotfix({"build_number": "99", "update": "XS82ECU1042"})
        assert xs.xenapi.pool_update.get_name_label(ref) == "XS82ECU1042"
        assert sim.host.inspect()["pool_update"][0]["ref"] == ref
        master = xs.xenapi.pool.get_master(xs.xenapi.pool.get_all()[0])
        assert xs.xenapi.host.get_software_version(master)["build_number"] == "99"
    finally:
        xs.xenapi.session.logout()


def test_sim_commands_report_wrong_password_and_untrusted_certificate(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIM_ENV, "not-the-password")
    code, _, stderr = run_cli("sim", "inspect", sim.url, "--fingerprint", sim.fingerprint)
    assert code == ExitCode.AUTH, stderr
    code, _, stderr = run_cli("sim", "hotfix", sim.url, "--password-env", PASSWORD_ENV)
    assert code == ExitCode.TLS and "fingerprint" in stderr
