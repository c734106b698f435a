"""A driver disk for an installer release: the release's base-kernel DDK, whatever the host runs."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import json_events, leftovers, run_cli, write_playbook

from xsddkvm.exit_codes import ExitCode


def test_installer_target_builds_in_the_base_release_ddk_despite_host_hotfixes(
    sim, ddk_xva: Path, tmp_path: Path
) -> None:
    sim.host.apply_hotfix(build_number="61", linux="4.19.0+2")
    pb = write_playbook(sim, tmp_path, ddk_xva, target={"installer": "8.2.1"})
    code, stdout, _ = run_cli("build", str(pb), "--json")
    assert code == 0, stdout[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ddk"]["target"] == "installer 8.2.1"
    assert manifest["ddk"]["target_kernel"] == manifest["ddk"]["kernel"] == "4.19.0+1"
    assert manifest["host"]["linux"] == "4.19.0+2"
    notices = [e["message"] for e in json_events(stdout) if e["event"] == "notice"]
    assert any("8.2.1 installer" in n and "hotfixes" in n and "ignored" in n for n in notices)
    assert set(leftovers(sim)) == {"pool_update"}  # only the hotfix this test applied


def test_a_hotfix_kernel_ddk_cannot_build_an_installer_driver_disk(sim, tmp_path: Path) -> None:
    from xsddkvm.sim.ddk_image import make_image

    image = tmp_path / "ddk-hotfix.xva"
    make_image(image, form="xva", product_version="8.2.1", build_number="61", kernel="4.19.0+2")
    pb = write_playbook(sim, tmp_path, image, target={"installer": "8.2.1"})
    code, _, stderr = run_cli("build", str(pb))
    assert code == ExitCode.MISMATCH
    assert "target.installer is 8.2.1" in stderr
    assert "kernel is 4.19.0+2, not 4.19.0+1" in stderr
    assert not (tmp_path / "out" / "build.log").exists()  # stopped before the build
    assert leftovers(sim) == {}


def test_an_installer_of_another_release_names_both_versions(
    sim, ddk_xva: Path, tmp_path: Path
) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva, target={"installer": "7.1.0"})
    code, _, stderr = run_cli("build", str(pb))
    assert code == ExitCode.MISMATCH
    assert "version is 8.2.1, not 7.1.0" in stderr
    assert leftovers(sim) == {}
