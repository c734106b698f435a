"""A machine in the middle of the DHCP network cannot take the build: SSH is pinned to the
host key the DDK showed on its console (read over the host's verified TLS)."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
from cli_support import access_to, leftovers, write_playbook

from xsddkvm.build import build
from xsddkvm.config import load_playbook
from xsddkvm.errors import GuestError
from xsddkvm.events import Event, StageStarted
from xsddkvm.exit_codes import ExitCode
from xsddkvm.guest.ssh import fingerprint
from xsddkvm.sim.server import SimServer


def test_ssh_refuses_a_guest_presenting_another_host_key(
    sim: SimServer, ddk_xva: Path, tmp_path: Path
) -> None:
    impostor = paramiko.RSAKey.generate(2048)  # same type as the pinned key, another key
    swapped: list[str] = []

    def emit(event: Event) -> None:
        # After first boot read the real key on the console, before SSH connects: from now
        # on whoever answers on the guest's IP presents the impostor's key.
        if isinstance(event, StageStarted) and event.stage == "ssh":
            (running,) = [o["ref"] for o in leftovers(sim)["VM"]]
            sshd = sim.host.guests.sshd_of(running)
            assert sshd is not None
            swapped.append(fingerprint(sshd.host_key.asbytes()))
            sshd.host_key = impostor

    pb = load_playbook(write_playbook(sim, tmp_path, ddk_xva, timeouts={"ssh": 10}))
    with pytest.raises(GuestError) as caught:
        build(pb, access_to(sim), emit=emit)

    error = caught.value
    assert swapped, "the build never reached the SSH stage"
    assert error.exit_code == ExitCode.GUEST
    genuine, presented = swapped[0], fingerprint(impostor.asbytes())
    assert genuine in error.message and presented in error.message
    assert "intercepting" in error.message
    assert "\n" not in error.paragraph()
    assert leftovers(sim) == {}
    out = tmp_path / "out"
    assert not out.exists() or [p.name for p in out.iterdir()] == []
