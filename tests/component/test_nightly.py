"""`nightly` against real simulated hosts: rebuild on change only, report, JUnit, exit codes."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from cli_support import PASSWORD_ENV, REPO, import_tasks, leftovers, run_cli, write_playbook

from xsddkvm.errors import ConfigError
from xsddkvm.events import Recorder
from xsddkvm.exit_codes import ExitCode
from xsddkvm.nightly import load_config, run_nightly
from xsddkvm.sim.scenario import default_scenario
from xsddkvm.sim.server import SimServer


@pytest.fixture(scope="session")
def ddk_hotfix_xva(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DDK of the same build whose kernel follows a hotfix (4.19.0+2)."""
    from xsddkvm.sim.ddk_image import make_image

    path = tmp_path_factory.mktemp("images") / "ddk-8.2.1-58-hf.xva"
    make_image(path, form="xva", product_version="8.2.1", build_number="58", kernel="4.19.0+2")
    return path


@pytest.fixture()
def servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[], SimServer]]:
    """Start simulated hosts whose guests share one SSH port (the playbook names one port)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    started: list[SimServer] = []

    def start() -> SimServer:
        scenario = default_scenario()
        if started:
            scenario.guest.ssh_port = started[0].host.guests.ssh_port
        server = SimServer(scenario).start()
        started.append(server)
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        return server

    yield start
    for server in started:
        server.stop()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}"


def write_config(
    tmp_path: Path,
    hosts: list[tuple[str, SimServer]],
    catalog: list[dict[str, Any]],
    **extra: Any,
) -> Path:
    playbook = write_playbook(hosts[0][1], tmp_path, Path("unused.xva"))
    data = {
        "playbook": str(playbook),
        "output_dir": "nightly",
        "catalog": catalog,
        "hosts": [
            {"url": url, "password_env": PASSWORD_ENV, "tls_fingerprint": server.fingerprint}
            for url, server in hosts
        ],
        **extra,
    }
    path = tmp_path / "nightly.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def by_url(run: Any) -> dict[str, Any]:
    return {o.url: o for o in run.outcomes}


def test_rebuilds_only_what_changed(
    servers: Callable[[], SimServer], ddk_xva: Path, ddk_hotfix_xva: Path, tmp_path: Path
) -> None:
    a, b = servers(), servers()
    catalog = [
        {"image": str(ddk_xva), "kernel": "4.19.0+1"},
        {"image": str(ddk_hotfix_xva), "kernel": "4.19.0+2"},
    ]
    config = write_config(tmp_path, [(a.url, a), (b.url, b)], catalog)
    out = tmp_path / "nightly"

    first = run_nightly(load_config(config), Recorder())
    assert first.exit_code == ExitCode.NIGHTLY_REBUILT, [o.message for o in first.outcomes]
    for outcome in first.outcomes:
        assert outcome.status == "rebuilt"
        assert Path(outcome.output_dir).parent.parent == out
        assert (Path(outcome.output_dir) / "helloworld.iso").is_file()
        assert outcome.ddk["image"] == str(ddk_xva)
    state = json.loads((out / "state.json").read_text())["hosts"]
    assert set(state) == {a.url, b.url}

    marks = {s: s.host.state.generation for s in (a, b)}
    code, stdout, _ = run_cli("nightly", str(config))
    assert code == ExitCode.OK
    assert "0 rebuilt, 2 up to date, 0 failed" in stdout
    second = json.loads((out / "report.json").read_text())["hosts"]
    assert all(h["status"] == "unchanged" and h["seconds"] < 1 for h in second)
    for server, mark in marks.items():
        assert import_tasks(server, mark) == []
        assert leftovers(server) == {}
        created = [e for e in server.host.state.log if e[0] > mark and e[1] == "VM"]
        assert created == []

    a.host.apply_hotfix(linux="4.19.0+2")
    third = run_nightly(load_config(config), Recorder())
    assert third.exit_code == ExitCode.NIGHTLY_REBUILT
    outcomes = by_url(third)
    assert outcomes[b.url].status == "unchanged"
    rebuilt = outcomes[a.url]
    assert rebuilt.status == "rebuilt"
    assert "linux 4.19.0+1 -> 4.19.0+2" in rebuilt.reason
    assert rebuilt.ddk["image"] == str(ddk_hotfix_xva)
    assert rebuilt.output_dir != first.outcomes[0].output_dir
    manifest = json.loads((Path(rebuilt.output_dir) / "manifest.json").read_text())
    assert manifest["ddk"]["kernel"] == "4.19.0+2"


def test_kernel_mismatch_fails_that_host_with_the_named_error(
    servers: Callable[[], SimServer], ddk_xva: Path, tmp_path: Path
) -> None:
    a = servers()
    a.host.apply_hotfix(linux="4.19.0+5")
    config = write_config(tmp_path, [(a.url, a)], [{"image": str(ddk_xva)}])
    run = run_nightly(load_config(config), Recorder())
    assert run.exit_code == ExitCode.NIGHTLY_FAILED
    (outcome,) = run.outcomes
    assert outcome.error["kind"] == "ddk-mismatch"
    assert "kernel 4.19.0+5" in outcome.message and "DDK 8.2.1-58" in outcome.message
    failure = ET.parse(tmp_path / "nightly" / "junit.xml").find(".//failure")
    assert failure is not None and failure.get("type") == "ddk-mismatch"
    assert json.loads((tmp_path / "nightly" / "state.json").read_text())["hosts"] == {}
    assert list(leftovers(a)) == ["pool_update"]  # the hotfix's own record, nothing of ours


def test_an_unreachable_host_does_not_stop_the_others(
    servers: Callable[[], SimServer], ddk_xva: Path, tmp_path: Path
) -> None:
    a = servers()
    localhost = a.url.replace("127.0.0.1", "localhost")
    dead = closed_port_url()
    hosts = [(a.url, a), (dead, a), (localhost, a)]
    config = write_config(tmp_path, hosts, [{"image": str(ddk_xva)}], concurrency=3)
    code, stdout, _ = run_cli("nightly", str(config))
    assert code == ExitCode.NIGHTLY_FAILED
    assert "2 rebuilt, 0 up to date, 1 failed" in stdout
    report = {
        h["url"]: h for h in json.loads((tmp_path / "nightly" / "report.json").read_text())["hosts"]
    }
    assert (
        report[dead]["status"] == "failed" and report[dead]["error"]["kind"] == "host-unreachable"
    )
    assert report[a.url]["status"] == report[localhost]["status"] == "rebuilt"
    state = json.loads((tmp_path / "nightly" / "state.json").read_text())["hosts"]
    assert set(state) == {a.url, localhost}

    junit = tmp_path / "nightly" / "junit.xml"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == [dead]
    junitparser = pytest.importorskip("junitparser")
    parsed = junitparser.JUnitXml.fromfile(str(junit))
    cases = [case for s in parsed for case in s]
    assert len(cases) == 3
    assert [c.name for c in cases if not c.is_passed] == [dead]
    assert leftovers(a) == {}


def test_host_info_prints_the_fingerprint(servers: Callable[[], SimServer]) -> None:
    a = servers()
    a.host.apply_hotfix(update_name="XS82E020")
    pin = ["--password-env", PASSWORD_ENV, "--tls-fingerprint", a.fingerprint]
    code, stdout, _ = run_cli("host", "info", a.url, *pin, "--json")
    assert code == ExitCode.OK
    info = json.loads(stdout)
    assert (info["url"], info["build_number"], info["linux"]) == (a.url, "58", "4.19.0+1")
    assert info["updates"] == ["XS82E020"] and len(info["digest"]) == 16
    code, stdout, _ = run_cli("host", "info", "sim://default")
    assert code == ExitCode.OK and "linux: 4.19.0+1" in stdout and "updates: none" in stdout


def test_the_example_config_is_valid() -> None:
    cfg = load_config(REPO / "playbooks" / "nightly.yml")
    assert cfg.concurrency == 4 and len(cfg.hosts) == 2
    assert cfg.resolve(cfg.playbook) == REPO / "playbooks" / "helloworld.yml"


def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "nightly.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "playbook": "pb.yml",
                "catalog": [{"image": "ddk.iso"}],
                "hosts": [{"url": "https://xs1", "pasword_env": "X"}],
            }
        )
    )
    with pytest.raises(
        ConfigError,
        match=r"nightly.yml: hosts\[0\].pasword_env: unknown key; did you mean 'password_env'",
    ):
        load_config(path)
    path.write_text(yaml.safe_dump({"playbook": "pb.yml", "catalog": [], "hosts": []}))
    with pytest.raises(ConfigError, match="nightly.yml: catalog: empty"):
        load_config(path)
    path.write_text(
        yaml.safe_dump(
            {
                "playbook": "pb.yml",
                "catalog": [{"image": "x"}],
                "hosts": [{"url": "xs1"}],
                "concurrency": "4",
            }
        )
    )
    with pytest.raises(ConfigError, match="nightly.yml: concurrency: expected a whole number"):
        load_config(path)
