"""Helpers for component tests: run the real CLI in-process, inspect the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from xsddkvm.cli import main
from xsddkvm.sim.server import SimServer

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
