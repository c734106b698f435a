"""Whole builds on the simulator: a warm build against its make step, ``nightly`` with nothing
changed against a bare fingerprint read, and 8 builds at once against 1."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from xsddkvm import golden
from xsddkvm.build import build
from xsddkvm.config import Playbook, load_playbook
from xsddkvm.events import Recorder, StageFinished
from xsddkvm.fingerprint import read_fingerprint
from xsddkvm.nightly import load_config, run_nightly
from xsddkvm.sim.scenario import default_scenario
from xsddkvm.sim.server import SimServer

from .common import REPO, Logger, Measure, Side, Sizes, access_to, timed

PASSWORD_ENV = "XSDDKVM_BENCH_HOST_PASSWORD"


def write_playbook(server: SimServer, image: Path, path: Path, output_dir: Path) -> Path:
    """The shipped hello-world playbook aimed at ``server`` (pinned), building ``image``."""
    data: dict[str, Any] = yaml.safe_load((REPO / "playbooks" / "helloworld.yml").read_text())
    data["image"] = {"source": str(image)}
    data["host"] = {
        "url": server.url,
        "password_env": PASSWORD_ENV,
        "tls_fingerprint": server.fingerprint,
    }
    data["vm"]["ssh_port"] = server.host.guests.ssh_port
    data["source"]["dir"] = str(REPO / "xsddkvm" / "templates" / "helloworld")
    data["artifacts"]["output_dir"] = str(output_dir)
    data["verify"] = {"enabled": False}  # installing the pack in a second VM is not the build
    path.write_text(yaml.safe_dump(data))
    os.environ[PASSWORD_ENV] = server.password  # every simulated host shares the default one
    return path


def _make_seconds(recorder: Recorder) -> float:
    return sum(e.seconds for e in recorder.of(StageFinished) if e.stage == "build")


def measure_warm(image: Path, work: Path, repeat: int, log: Logger) -> Measure:
    """A build cloned from a golden template, against the make step it runs."""
    with SimServer(default_scenario(), data_dir=work / "sim-warm") as server:
        pb: Playbook = load_playbook(
            write_playbook(server, image, work / "warm.yml", work / "warm-out")
        )
        access = access_to(server)
        golden.prepare(pb, access, Recorder())
        total, make = Side("xsddkvm warm build"), Side("make step alone")
        for i in range(repeat):
            recorder = Recorder()
            total.samples.append(timed(lambda: build(pb, access, emit=recorder)))  # noqa: B023
            make.samples.append(_make_seconds(recorder))
            log(f"warm build {i + 1}/{repeat}: {total.samples[-1]:.2f} s, make "
                f"{make.samples[-1]:.2f} s")  # fmt: skip
    added = [t - m for t, m in zip(total.samples, make.samples)]
    median_added = sorted(added)[len(added) // 2]
    return Measure(
        "warm_build", "Warm build from a golden image", "s", total, make, "<=2 s added",
        0.0, higher=False, met_override=median_added <= 2.0,
        extra={"added_seconds": added},
    )  # fmt: skip


def measure_nightly(image: Path, work: Path, sizes: Sizes, repeat: int, log: Logger) -> Measure:
    """``nightly`` over hosts that did not change, per host, against reading one fingerprint."""
    servers: list[SimServer] = []
    try:
        for i in range(sizes.nightly_hosts):
            scenario = default_scenario()
            if servers:  # the playbook names one guest SSH port for every host
                scenario.guest.ssh_port = servers[0].host.guests.ssh_port
            servers.append(SimServer(scenario, data_dir=work / f"sim-nightly-{i}").start())
        playbook = write_playbook(servers[0], image, work / "nightly-pb.yml", work / "unused")
        config = work / "nightly.yml"
        config.write_text(yaml.safe_dump({
            "playbook": str(playbook), "output_dir": str(work / "nightly-out"),
            "catalog": [{"image": str(image), "kernel": "4.19.0+1"}],
            "hosts": [{"url": s.url, "password_env": PASSWORD_ENV,
                       "tls_fingerprint": s.fingerprint} for s in servers],
        }))  # fmt: skip
        first = run_nightly(load_config(config), Recorder())
        if any(o.status != "rebuilt" for o in first.outcomes):
            raise RuntimeError(f"nightly's first run failed: {[o.message for o in first.outcomes]}")
        per_host, fingerprint = Side("xsddkvm nightly, per host"), Side("log in, read fingerprint")
        for i in range(repeat):
            again = run_nightly(load_config(config), Recorder())
            if any(o.status != "unchanged" for o in again.outcomes):
                raise RuntimeError(f"nightly rebuilt: {[o.reason for o in again.outcomes]}")
            per_host.samples.append(max(o.seconds for o in again.outcomes))
            for server in servers:
                fingerprint.samples.append(timed(lambda: _read_fingerprint(server)))  # noqa: B023
            log(f"nightly {i + 1}/{repeat}: {again.seconds:.2f} s for {len(servers)} hosts, "
                f"slowest host {per_host.samples[-1]:.2f} s")  # fmt: skip
    finally:
        for server in servers:
            server.stop()
    return Measure(
        "nightly_unchanged", f"`nightly` with nothing changed ({len(servers)} hosts)", "s",
        per_host, fingerprint, "<=1 s per host", 0.0, higher=False,
        met_override=per_host.median <= 1.0,
    )  # fmt: skip


def _read_fingerprint(server: SimServer) -> None:
    with access_to(server).session() as xs:
        read_fingerprint(xs)


def _cpu_seconds() -> float:
    """CPU used so far by this process (the simulator and its guests' commands) and its children."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _builds_at_once(playbook: Path, work: Path, count: int, tag: str) -> tuple[float, float]:
    """Wall time and CPU seconds of ``count`` ``xsddkvm build`` processes started together."""
    cpu = _cpu_seconds()
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xsddkvm",
                "build",
                str(playbook),
                "--json",
                "-o",
                str(work / f"parallel-out-{tag}-{n}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )  # fmt: skip
        for n in range(count)
    ]
    failed = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
            failed.append(next((e for e in lines if e.get("event") == "error"), lines[-1:]))
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} builds failed: {failed[0]}")
    return time.perf_counter() - started, _cpu_seconds() - cpu


def measure_parallel(image: Path, work: Path, sizes: Sizes, repeat: int, log: Logger) -> Measure:
    """``xsddkvm build`` processes (cold: each imports the DDK) against one simulated host."""
    many, one = Side(f"{sizes.parallel} builds at once"), Side("1 build")
    cpu_one: list[float] = []
    cpu_many: list[float] = []
    with SimServer(default_scenario(), data_dir=work / "sim-parallel") as server:
        playbook = write_playbook(server, image, work / "parallel.yml", work / "unused")
        for i in range(repeat):
            wall, cpu = _builds_at_once(playbook, work, 1, f"{i}")
            one.samples.append(wall)
            cpu_one.append(cpu)
            wall, cpu = _builds_at_once(playbook, work, sizes.parallel, f"{i}")
            many.samples.append(wall)
            cpu_many.append(cpu)
            log(f"parallel {i + 1}/{repeat}: 1 build {one.samples[-1]:.1f} s "
                f"({cpu_one[-1]:.1f} CPU-s), {sizes.parallel} at once {many.samples[-1]:.1f} s "
                f"({cpu_many[-1]:.1f} CPU-s)")  # fmt: skip
    # Everything here (clients, simulator, the guests' real make/rpmbuild) shares this machine's
    # CPUs, which a real host's DDK VMs would not: the CPU floor says how much is left to gain.
    floor = statistics.median(cpu_many) / (os.cpu_count() or 1)
    return Measure(
        "parallel_builds", f"{sizes.parallel} builds at once", "s", many, one,
        "<=1.5x wall time", 1.5, higher=False,
        extra={"cpu_seconds_one": statistics.median(cpu_one),
               "cpu_seconds_many": statistics.median(cpu_many),
               "wall_floor_from_cpu_s": round(floor, 2)},
    )  # fmt: skip
