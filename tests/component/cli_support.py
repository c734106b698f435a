"""Helpers for component tests: run the real CLI in-process, inspect the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from xsddkvm.build import HostAccess
from xsddkvm.cli import main
from xsddkvm.secrets import Secret
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi.tls import TlsSettings

REPO = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "XSDDKVM_TEST_HOST_PASSWORD"


def leftovers(server: SimServer) -> dict[str, list[Any]]:
    """Objects left on the simulator by a finished command: must be empty."""
    found = server.host.inspect()
    return {cls: objs for cls, objs in found.items() if objs}


def write_playbook(
    server: SimServer, tmp_path: Path, image: Path, **sections: dict[str, Any]
) -> Path:
    """The shipped hello-world playbook, aimed at ``server`` as a real host would be."""
    data = yaml.safe_load((REPO / "playbooks" / "helloworld.yml").read_text())
    data["image"] = {"source": str(image)}
    data["host"] = {
        "url": server.url,
        "password_env": PASSWORD_ENV,
        "tls_fingerprint": server.fingerprint,
    }
    data["vm"]["ssh_port"] = server.host.guests.ssh_port
    data["source"]["dir"] = str(REPO / "xsddkvm" / "templates" / "helloworld")
    data["artifacts"]["output_dir"] = str(tmp_path / "out")
    data["timeouts"] = {"boot": 60, "ip": 30, "ssh": 30, "build": 120, "import": 120}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp_path / "pb.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def access_to(server: SimServer) -> HostAccess:
    """What a playbook would say to reach ``server``, pinned to its certificate."""
    return HostAccess(
        server.url,
        server.username,
        Secret(server.password),
        TlsSettings(pin_sha256=server.fingerprint),
        guest_ssh_port=server.host.guests.ssh_port,
    )


def import_tasks(server: SimServer, since: int = 0) -> list[str]:
    """Tasks created for an upload since generation ``since`` (client's or the host's own)."""
    return [
        ref
        for gen, cls, op, ref, snap in server.host.state.log
        if gen > since and cls == "task" and op == "add" and "import" in snap["name_label"].lower()
    ]


def start_build(pb: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``xsddkvm build PB --json`` as a separate process (for signals and concurrency)."""
    return subprocess.Popen(
        [sys.executable, "-m", "xsddkvm", "build", str(pb), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def child_env(sim: SimServer, tmp_path: Path) -> dict[str, str]:
    """The environment of such a process: the host password and its own data dir."""
    return {**os.environ, PASSWORD_ENV: sim.password, "XDG_DATA_HOME": str(tmp_path / "xdg")}
