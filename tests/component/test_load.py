"""Eight builds at once against one simulated host: all succeed, nothing collides, nothing leaks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cli_support import child_env, leftovers, start_build, write_playbook

from xsddkvm.sim.server import SimServer

BUILDS = 8


def test_eight_concurrent_builds(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    since = sim.host.state.generation
    runs: list[tuple[Path, subprocess.Popen[str]]] = []
    for i in range(BUILDS):
        work = tmp_path / f"b{i}"
        work.mkdir()
        pb = write_playbook(sim, work, ddk_xva)
        runs.append((work / "out", start_build(pb, child_env(sim, tmp_path))))
    outcomes = [(out, *proc.communicate(timeout=110), proc.returncode) for out, proc in runs]

    for _out, _stdout, stderr, code in outcomes:
        assert code == 0, stderr[-2000:]
    manifests = [json.loads((out / "manifest.json").read_text()) for out, *_ in outcomes]
    build_ids = {m["build_id"] for m in manifests}
    assert len(build_ids) == BUILDS
    for out, *_ in outcomes:
        assert (out / "helloworld.iso").is_file()
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left

    vms = build_vms(sim, since)
    assert len(vms) == BUILDS
    assert len({rec["name_label"] for rec in vms.values()}) == BUILDS
    assert {rec["other_config"]["xsddkvm.build_id"] for rec in vms.values()} == build_ids
    assert all(f"xsddkvm-{rec['other_config']['xsddkvm.build_id']}" in rec["name_label"]
               for rec in vms.values())  # fmt: skip
    assert leftovers(sim) == {}


def build_vms(sim: SimServer, since: int) -> dict[str, dict[str, Any]]:
    """Each VM created since generation ``since``, as last recorded before it was destroyed."""
    last: dict[str, dict[str, Any]] = {}
    for gen, cls, _op, ref, snap in list(sim.host.state.log):
        if gen > since and cls == "VM" and snap and snap["name_label"].startswith("xsddkvm-"):
            last[ref] = snap
    return last
