"""Stage: SSH into the DDK, pinned to the host key the console showed (undo: disconnect)."""

from __future__ import annotations

import time

from ..events import Waiting
from ..guest.ssh import GuestSSH
from ..keys import load_key
from ..secrets import generate_password
from .context import BuildContext


class SshConnect:
    name = "ssh"
    description = "connect to the DDK over SSH"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        assert ctx.guest_ip is not None
        started = time.monotonic()
        ctx.ssh = GuestSSH.connect(
            ctx.guest_ip,
            port=ctx.ssh_port,
            username="root",
            password=ctx.guest_password,
            pkey=load_key() if ctx.guest_password is None else None,
            expected_host_key=ctx.guest_host_key,
            timeout=30,
            connect_retry_seconds=ctx.playbook.timeouts.ssh,
            on_wait=lambda elapsed: ctx.emit(Waiting("ssh", round(elapsed, 1))),
        )
        ctx.timings["ssh-handshake"] = round(time.monotonic() - started, 3)
        if ctx.playbook.vm.first_boot == "noninteractive":
            # The DDK's default password is public: replace it at once (over stdin, never argv).
            fresh = generate_password()
            ctx.ssh.run("chpasswd", stdin=f"root:{fresh.reveal()}\n".encode())
            ctx.guest_password = fresh
        release = ctx.ssh.run(
            'cat "${XSDDKVM_SIM_ROOT:-}/etc/redhat-release"; uname -r', check=False
        )
        lines = [line for line in release.stdout_tail if line.strip()]
        if lines:
            ctx.ddk["release"] = lines[0]
            ctx.ddk["kernel"] = lines[-1]

    def undo(self, ctx: BuildContext) -> None:
        if ctx.ssh is not None:
            ctx.ssh.close()
            ctx.ssh = None
