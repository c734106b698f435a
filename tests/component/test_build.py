"""`xsddkvm build` end to end: a verified pack on disk and nothing left on the host."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pycdlib
from cli_support import json_events, leftovers, run_cli, write_playbook

from xsddkvm.exit_codes import ExitCode


def read_iso(path: Path, name: str) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        return out.getvalue()
    finally:
        iso.close()


def test_build_produces_a_verified_pack_and_leaves_nothing(
    sim, ddk_xva: Path, tmp_path: Path
) -> None:
    code, stdout, _ = run_cli("build", str(write_playbook(sim, tmp_path, ddk_xva)), "--json")
    assert code == 0, stdout[-3000:]
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "build.log",
        "helloworld.iso",
        "helloworld.iso.md5",
        "helloworld.metadata.md5",
        "manifest.json",
    ]
    # The md5 files verify with independent tools: md5sum -c, and the metadata rule of ddk.md §4.1.
    subprocess.run(["md5sum", "-c", "helloworld.iso.md5"], cwd=out, check=True, capture_output=True)
    iso = out / "helloworld.iso"
    metadata = read_iso(iso, "XS-REPOSITORY") + read_iso(iso, "XS-PACKAGES")
    assert (out / "helloworld.metadata.md5").read_text().split()[0] == hashlib.md5(
        metadata
    ).hexdigest()
    assert b"helloworld" in read_iso(iso, "XS-PACKAGES")
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["name"] for f in manifest["files"]} >= {"helloworld.iso"}
    assert manifest["host"]["linux"] == "4.19.0+1"
    assert manifest["ddk"]["kernel"] == "4.19.0+1"
    assert len(manifest["source"]["sha256"]) == 64
    # --json: every line is an event; stages start and finish in order.
    events = json_events(stdout)
    started = [e["stage"] for e in events if e["event"] == "stage_started"]
    assert started[0] == "connect" and started[-1] == "fetch"
    assert started.index("image") < started.index("network") < started.index("boot")
    assert any(e["event"] == "progress" and e["what"] == "upload" for e in events)
    assert any(e["event"] == "log_line" for e in events)
    assert events[-1]["event"] == "result" and events[-1]["ok"] is True
    assert leftovers(sim) == {}


def test_failing_make_reports_target_and_cleans_up(sim, ddk_xva: Path, tmp_path: Path) -> None:
    sim.host.scenario.faults.make_fails = True
    code, _, stderr = run_cli("build", str(write_playbook(sim, tmp_path, ddk_xva)))
    assert code == ExitCode.BUILD
    assert "make build-srctarballs failed" in stderr
    assert "build.log" in stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["build.log"]
    assert leftovers(sim) == {}


def test_keep_vm_always_keeps_it_and_says_how_to_reach_it(
    sim, ddk_xva: Path, tmp_path: Path
) -> None:
    code, _, stderr = run_cli(
        "build", str(write_playbook(sim, tmp_path, ddk_xva)), "--keep-vm", "always"
    )
    assert code == 0
    assert "Kept the DDK VM" in stderr
    kept = leftovers(sim)
    assert len(kept.get("VM", [])) == 1
    assert kept["VM"][0]["power_state"] == "Running"


def test_build_from_a_ddk_iso_as_citrix_ships_it(sim, tmp_path: Path) -> None:
    from xsddkvm.sim.ddk_image import make_image

    iso = make_image(tmp_path / "XenServer-8.2.1-DDK.iso", form="iso", chunk_size=1 << 20)
    code, _, stderr = run_cli("build", str(write_playbook(sim, tmp_path, iso)))
    assert code == 0, stderr[-2000:]
    subprocess.run(
        ["md5sum", "-c", "helloworld.iso.md5"],
        cwd=tmp_path / "out",
        check=True,
        capture_output=True,
    )
    assert leftovers(sim) == {}
