"""SIGINT/SIGTERM at stage boundaries undo everything; no secret appears anywhere."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_support import child_env, leftovers, start_build, write_playbook

from xsddkvm.sim.server import SimServer


@pytest.mark.parametrize(
    ("stage", "signum", "expected"),
    [
        ("image", signal.SIGINT, 130),
        ("boot", signal.SIGTERM, 143),
        ("first-boot", signal.SIGINT, 130),
        ("push", signal.SIGTERM, 143),
        ("build", signal.SIGINT, 130),
        ("fetch", signal.SIGINT, 130),
    ],
)
def test_signal_at_stage_start_undoes_everything(
    stage: str, signum: int, expected: int, sim: SimServer, ddk_xva: Path, tmp_path: Path
) -> None:
    proc = start_build(write_playbook(sim, tmp_path, ddk_xva), child_env(sim, tmp_path))
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        event = json.loads(line)
        if event["event"] == "stage_started" and event["stage"] == stage:
            proc.send_signal(signum)
            break
    rest, _err = proc.communicate(timeout=120)
    assert proc.returncode == expected, (lines + [rest])[-5:]
    final = json.loads(rest.strip().splitlines()[-1])
    assert final["event"] == "error" and final["kind"] == "interrupted"
    assert leftovers(sim) == {}
    assert_nothing_partial(tmp_path / "out")


def assert_nothing_partial(out: Path) -> None:
    """Either no artifact at all, or (a signal that came while a finished build was removing its
    VM) the whole verified pack: never a partial file."""
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    if "manifest.json" not in names:
        assert names <= {"build.log"}
        return
    manifest = json.loads((out / "manifest.json").read_text())
    assert names == {"build.log", "manifest.json", *(f["name"] for f in manifest["files"])}
    subprocess.run(["md5sum", "-c", "helloworld.iso.md5"], cwd=out, check=True, capture_output=True)


def test_no_secret_in_any_output_log_manifest_or_process_listing(
    sim: SimServer, ddk_xva: Path, tmp_path: Path
) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva)
    env = child_env(sim, tmp_path)
    listings: list[str] = []
    proc = start_build(pb, env)
    stop = threading.Event()

    def watch() -> None:  # every process's argv while the build runs
        while not stop.is_set():
            listings.append(
                subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
            )
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        stop.set()
        watcher.join()
    assert proc.returncode == 0, stderr[-2000:]
    # A failing build too (its error text and log are searched as well).
    sim.host.scenario.faults.make_fails = True
    failed = subprocess.run(
        [sys.executable, "-m", "xsddkvm", "build", str(pb)], capture_output=True, text=True, env=env
    )
    assert failed.returncode != 0
    captured = [stdout, stderr, failed.stdout, failed.stderr, *listings]
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix != ".iso":
            captured.append(path.read_text(errors="replace"))
    for path in (tmp_path / "xdg").rglob("*"):
        if path.is_file() and path.suffix not in (".xva",):
            captured.append(path.read_text(errors="replace"))
    everything = "\n".join(captured)
    assert sim.password not in everything
    assert leftovers(sim) == {}
