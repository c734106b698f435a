"""``xsddkvm gc``: after a SIGKILLed build, list and remove its leftovers; spare the living."""

from __future__ import annotations

import datetime
import json
import signal
from pathlib import Path
from typing import Any

from cli_support import (
    PASSWORD_ENV,
    access_to,
    child_env,
    json_events,
    leftovers,
    run_cli,
    start_build,
    write_playbook,
)

from xsddkvm import golden
from xsddkvm.config import load_playbook
from xsddkvm.events import Recorder
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi import vm
from xsddkvm.xapi.session import XapiSession
from xsddkvm.xapi.vm import BuildIdentity


def gc(sim: SimServer, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``xsddkvm gc`` against ``sim`` with --json; returns (exit code, result data)."""
    code, stdout, stderr = run_cli(
        "gc", sim.url, "--tls-fingerprint", sim.fingerprint, "--password-env", PASSWORD_ENV,
        "--json", *args,
    )  # fmt: skip
    assert code == 0, stderr[-2000:]
    result = json_events(stdout)[-1]
    assert result["event"] == "result" and result["command"] == "gc"
    return code, result["data"]


def by_class(sim: SimServer, *, without_sessions: bool = True) -> dict[str, list[str]]:
    found = {cls: sorted(o["ref"] for o in objs) for cls, objs in leftovers(sim).items()}
    if without_sessions:
        found.pop("session", None)
    return found


def kill_mid_build(sim: SimServer, pb: Path, tmp_path: Path) -> int:
    """Start a build in a subprocess, SIGKILL it once the make targets start; returns its pid."""
    proc = start_build(pb, child_env(sim, tmp_path))
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "stage_started" and event["stage"] == "build":
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def clone_as(xs: XapiSession, template: str, identity: BuildIdentity) -> str:
    """A clone of the golden template tagged as ``identity``'s build (as a warm build makes)."""
    with xs.doing("cloning"):
        ref = str(xs.api.VM.clone(template, f"xsddkvm-{identity.build_id} DDK build"))
        xs.api.VM.set_is_a_template(ref, False)
    vm.tag(xs, "VM", ref, identity.tags())
    for vdi in vm.disks_of(xs, ref):
        vm.tag(xs, "VDI", vdi, identity.tags())
    return ref


def test_gc_removes_a_killed_build_and_spares_templates_and_live_builds(
    sim: SimServer, ddk_xva: Path, tmp_path: Path
) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    template = golden.prepare(load_playbook(pb), access_to(sim), Recorder())
    with access_to(sim).session() as xs:
        live = clone_as(xs, template.ref, BuildIdentity.new())  # this test's pid: alive
    survivors = by_class(sim)

    dead_pid = kill_mid_build(sim, pb, tmp_path)  # a warm build: a clone of the template
    after_kill = by_class(sim)
    dead_vms = [
        o for o in leftovers(sim)["VM"] if o["other_config"].get("xsddkvm.pid") == str(dead_pid)
    ]
    assert len(dead_vms) == 1 and dead_vms[0]["power_state"] == "Running"
    assert after_kill != survivors

    _, listed = gc(sim, "--dry-run")
    assert by_class(sim) == after_kill  # a dry run changes nothing
    assert listed["dry_run"] is True
    assert {(o["cls"], o["pid"]) for o in listed["objects"]} == {
        ("VM", dead_pid),
        ("VDI", dead_pid),
    }
    assert {o["uuid"] for o in listed["objects"] if o["cls"] == "VM"} == {dead_vms[0]["uuid"]}
    assert all("has exited" in o["reason"] for o in listed["objects"])

    _, removed = gc(sim)
    assert removed["objects"] == listed["objects"]
    assert by_class(sim) == survivors  # the template, the live clone and their disks remain
    # The killed process never logged out; xapi expires such sessions itself after 24 h idle.
    for session in leftovers(sim).get("session", []):
        sim.host.logout(session["ref"])
    _, again = gc(sim)
    assert again["objects"] == []

    with access_to(sim).session() as xs:
        vm.destroy_with_disks(xs, live)
        golden.remove(xs, template.uuid)
    assert leftovers(sim) == {}


def test_other_owners_are_judged_by_age(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    template = golden.prepare(load_playbook(pb), access_to(sim), Recorder())
    now = datetime.datetime.now(datetime.timezone.utc)

    def stamp(hours: float) -> str:
        return (now - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    old = BuildIdentity("old0000000ab", "ci@elsewhere", 1, stamp(10))
    young = BuildIdentity("young00000ab", "ci@elsewhere", 1, stamp(1))
    with access_to(sim).session() as xs:
        old_vm = clone_as(xs, template.ref, old)
        young_vm = clone_as(xs, template.ref, young)
        sr = vm.find_sr(xs, None)
        with xs.doing("making a loose disk and a stuck task"):
            loose = xs.api.VDI.create(
                {"SR": sr, "virtual_size": str(2**20), "type": "user", "sharable": False,
                 "read_only": False, "other_config": old.tags(), "name_label": "loose",
                 "name_description": "", "sm_config": {}, "xenstore_data": {}, "tags": []}
            )  # fmt: skip
            task = xs.api.task.create("xsddkvm import", "left pending")

    _, listed = gc(sim, "--dry-run")
    assert {o["build_id"] for o in listed["objects"]} == {"old0000000ab"}
    assert {o["cls"] for o in listed["objects"]} == {"VM", "VDI"}
    assert loose in {o["ref"] for o in listed["objects"]}
    assert all("another owner" in o["reason"] for o in listed["objects"])

    _, removed = gc(sim, "--min-age", "0")  # now the young build and the task are old enough
    refs = {o["ref"] for o in removed["objects"]}
    assert {old_vm, young_vm, loose, task} <= refs
    assert removed["objects"][0]["cls"] == "task"
    left = leftovers(sim)
    assert [o["uuid"] for o in left["VM"]] == [template.uuid]  # the golden template survives
    assert all(o["other_config"].get("xsddkvm.golden") == "true" for o in left["VDI"])
    with access_to(sim).session() as xs:
        golden.remove(xs, template.uuid)
    assert leftovers(sim) == {}


def test_gc_text_output(sim: SimServer) -> None:
    code, stdout, stderr = run_cli(
        "gc", sim.url, "--tls-fingerprint", sim.fingerprint, "--password-env", PASSWORD_ENV,
        "--dry-run",
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout.strip() == "Would remove 0 object(s)."
