"""`xsddkvm doctor`, in-process, against the simulator (sim:// and as a pinned "real" host)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from cli_support import PASSWORD_ENV
from click.testing import CliRunner

from tests.sshd import RealSshd, free_port, skip_reason
from xsddkvm.cli_firstday import register
from xsddkvm.doctor import check_host
from xsddkvm.exit_codes import ExitCode
from xsddkvm.init import InitOptions, init_project
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi.tls import TlsSettings


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG data dir per module, so the simulated DDK image is generated once."""
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, data_home: Path) -> Iterator[None]:
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():  # the CLI installs its own handlers
        signal.signal(signum, handler)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """What `xsddkvm init` writes for a new driver: builds as-is against sim://default."""
    init_project(tmp_path, InitOptions("mydrv"))
    return tmp_path / "mydrv.yml"


def edit(playbook: Path, **sections: dict[str, Any]) -> Path:
    data = yaml.safe_load(playbook.read_text())
    for name, values in sections.items():
        data[name] = {**(data.get(name) or {}), **values}
    playbook.write_text(yaml.safe_dump(data))
    return playbook


def doctor(*args: str, text: bool = False) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run `xsddkvm doctor --json ARGS`: exit code, checks by name, and (if asked for) the text
    rendering of a second run without --json."""
    group = click.Group("xsddkvm")
    register(group)
    runner = CliRunner()
    result = runner.invoke(group, ["doctor", "--json", *args], catch_exceptions=False)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    checks = {e["name"]: e for e in events if e["event"] == "check"}
    rendered = (
        runner.invoke(group, ["doctor", *args], catch_exceptions=False).stdout if text else ""
    )
    return result.exit_code, checks, rendered


def test_new_project_passes_against_the_simulator(project: Path) -> None:
    code, checks, text = doctor(str(project), text=True)
    assert code == 0, text
    for name in ("playbook", "source", "host", "credentials", "image", "sr", "network"):
        assert checks[name]["status"] == "PASS", checks[name]
    assert "pinned fingerprint" in checks["host"]["detail"]
    assert "XenServer DDK 8.2.1-58" in checks["image"]["detail"]
    assert "'Local storage'" in checks["sr"]["detail"]
    assert "management network" in checks["network"]["detail"]
    assert "DHCP" in checks["network"]["detail"]
    assert checks["ddk-match"]["status"] == "PASS"
    assert "4.19.0+1" in checks["ddk-match"]["detail"]
    assert checks["target"]["detail"].startswith("live host")
    assert checks["guest-ssh"]["status"] == "SKIP"
    assert checks["package paramiko"]["status"] == "PASS"
    assert "PASS credentials: logged in to https://127.0.0.1:" in text
    assert "fix:" not in text


def test_pinned_real_host_path(sim: SimServer, ddk_xva: Path, project: Path) -> None:
    """A https:// host with a pinned certificate and a password variable, like a real one."""
    host = {"url": sim.url, "tls_fingerprint": sim.fingerprint, "password_env": PASSWORD_ENV}
    edit(project, host=host, image={"source": str(ddk_xva)})
    code, checks, _ = doctor(str(project))
    assert code == 0, checks
    assert checks["host"]["status"] == checks["credentials"]["status"] == "PASS"
    assert checks["image"]["detail"].startswith("ddk-8.2.1.xva: XenServer DDK 8.2.1-58")
    assert checks["tools"]["detail"] == "no local tools needed for a .xva image"


def test_missing_password_fails_credentials_with_a_fix(
    sim: SimServer, ddk_xva: Path, project: Path
) -> None:
    host = {"url": sim.url, "tls_fingerprint": sim.fingerprint, "password_env": "XSDDKVM_UNSET"}
    edit(project, host=host, image={"source": str(ddk_xva)})
    code, checks, _ = doctor(str(project))
    assert code == ExitCode.DOCTOR
    assert checks["host"]["status"] == "PASS"
    assert checks["credentials"]["status"] == "FAIL"
    assert "XSDDKVM_UNSET" in checks["credentials"]["fix"]
    assert checks["image"]["status"] == "PASS"  # a local image is still read
    assert checks["sr"]["status"] == "SKIP"


def test_wrong_password_fails_credentials(
    sim: SimServer, ddk_xva: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    host = {"url": sim.url, "tls_fingerprint": sim.fingerprint, "password_env": PASSWORD_ENV}
    edit(project, host=host, image={"source": str(ddk_xva)})
    code, checks, _ = doctor(str(project))
    assert code == ExitCode.DOCTOR
    assert checks["credentials"]["status"] == "FAIL"
    assert "not-the-password" not in json.dumps(checks)
    assert checks["network"]["status"] == "SKIP"


def test_missing_source_dir_fails_with_a_fix(project: Path) -> None:
    edit(project, source={"dir": "nowhere"})
    code, checks, text = doctor(str(project), text=True)
    assert code == ExitCode.DOCTOR
    assert checks["source"]["status"] == "FAIL"
    assert "nowhere" in checks["source"]["detail"]
    assert "xsddkvm init" in checks["source"]["fix"]
    assert checks["host"]["status"] == "PASS"  # one failure does not hide the other checks
    assert "FAIL source: " in text and "     fix: " in text


def test_unreadable_image_fails_with_a_fix(project: Path) -> None:
    (project.parent / "broken.xva").write_bytes(b"this is not a tar archive" * 100)
    edit(project, image={"source": "broken.xva"})
    code, checks, _ = doctor(str(project))
    assert code == ExitCode.DOCTOR
    assert checks["image"]["status"] == "FAIL"
    assert "broken.xva" in checks["image"]["detail"]
    assert checks["image"]["fix"]
    assert checks["credentials"]["status"] == "PASS"


def test_missing_image_fails_with_a_fix(project: Path) -> None:
    edit(project, image={"source": "XenServer-8.2.1-DDK.iso"})
    code, checks, _ = doctor(str(project))
    assert code == ExitCode.DOCTOR
    assert "does not exist" in checks["image"]["detail"]
    assert "image.source" in checks["image"]["fix"]


def test_ddk_build_mismatch_is_explained(project: Path) -> None:
    """A DDK ISO, Citrix layout, one build behind the host: read in place, then compared."""
    from xsddkvm.sim.ddk_image import make_image

    make_image(project.parent / "ddk-57.iso", form="iso", build_number="57")
    edit(project, image={"source": "ddk-57.iso"})
    code, checks, _ = doctor(str(project))
    assert checks["tools"]["detail"].startswith("pycdlib reads the DDK .iso in place")
    assert checks["image"]["detail"].startswith("ddk-57.iso: XenServer DDK 8.2.1-57")
    assert code == ExitCode.DOCTOR
    match = checks["ddk-match"]
    assert match["status"] == "FAIL"
    assert "DDK 8.2.1-57 but the host runs 8.2.1-58 (kernel 4.19.0+1)" in match["detail"]
    assert "will not install" in match["detail"]
    assert "build 58" in match["fix"]


def test_installer_target_is_matched_against_the_installer(project: Path) -> None:
    edit(project, target={"installer": "7.1.0"})
    code, checks, _ = doctor(str(project))
    assert code == ExitCode.DOCTOR
    assert checks["ddk-match"]["status"] == "FAIL"
    assert "7.1.0" in checks["ddk-match"]["fix"]
    assert checks["target"]["detail"].startswith("installer 7.1.0: a driver disk")


def test_unreachable_host(project: Path) -> None:
    code, checks, _ = doctor(str(project), "--host", f"https://127.0.0.1:{free_port()}")
    assert code == ExitCode.DOCTOR
    assert checks["host"]["status"] == "FAIL"
    assert "cannot connect" in checks["host"]["detail"]
    assert checks["credentials"]["status"] == "SKIP"
    assert checks["source"]["status"] == "PASS"


def test_untrusted_certificate_prints_the_fingerprint_to_pin(sim: SimServer) -> None:
    check = check_host(sim.url, TlsSettings(), timeout=5)
    assert check.status == "FAIL"
    assert sim.fingerprint in check.detail
    assert f'host.tls_fingerprint: "{sim.fingerprint}"' in (check.fix or "")
    wrong = TlsSettings(pin_sha256="00" * 32)
    assert "not the pinned" in check_host(sim.url, wrong, timeout=5).detail
    assert check_host(sim.url, TlsSettings(insecure=True), timeout=5).status == "WARN"


def test_bad_playbook_fails_the_playbook_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("vm:\n  vcpus: many\n")
    code, checks, _ = doctor(str(bad))
    assert code == ExitCode.DOCTOR
    assert checks["playbook"]["status"] == "FAIL"
    assert "vm.vcpus" in checks["playbook"]["detail"]


def test_guest_ssh_refused(project: Path) -> None:
    code, checks, _ = doctor("--guest", f"127.0.0.1:{free_port()}")
    assert code == ExitCode.DOCTOR
    assert checks["playbook"]["status"] == "SKIP"
    assert checks["guest-ssh"]["status"] == "FAIL"
    assert "refused" in checks["guest-ssh"]["detail"]
    assert "DDK VM is running" in checks["guest-ssh"]["fix"]


@pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))
def test_guest_ssh_handshake_with_a_real_sshd(tmp_path: Path) -> None:
    with RealSshd("legacy", tmp_path / "sshd") as sshd:
        code, checks, _ = doctor("--guest", f"{sshd.host}:{sshd.port}")
    assert code == 0
    assert checks["guest-ssh"]["status"] == "PASS"
    assert "OpenSSH" in checks["guest-ssh"]["detail"]
    assert "host key SHA256:" in checks["guest-ssh"]["detail"]
