"""Stage: set the DDK's root password on its console and learn its SSH host key there.

The console is reached through the host (``CONNECT`` with our session over verified TLS),
so what it tells us is trusted: the SSH host key read there pins the later SSH connection.
"""

from __future__ import annotations

import os

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ..errors import ConsoleError
from ..events import LogLine
from ..guest import dialog
from ..guest.ssh import fingerprint
from ..secrets import Secret, generate_password
from ..xapi import vm
from ..xapi.console import open_console
from .context import BuildContext

DEFAULT_DDK_PASSWORD = "xensource"  # Citrix DDKs' baked-in root password (ddk.md §2)


def open_vm_console(ctx: BuildContext) -> dialog.ConsoleStream:
    """Open the VM's vt100 console, waiting for it to appear after boot."""
    assert ctx.vm is not None
    location = Retrying(
        retry=retry_if_exception_type(ConsoleError),
        wait=wait_exponential(multiplier=0.1, max=2),
        stop=stop_after_delay(min(ctx.playbook.timeouts.boot, 60)),
        reraise=True,
    )(vm.text_console, ctx.xs, ctx.vm)
    return open_console(location, ctx.xs.handle, ctx.xs.url, ctx.xs.tls, ctx.playbook.timeouts.boot)


class ConsoleLines:
    """Console text as whole lines (a terminal echoes typed keys one at a time)."""

    def __init__(self, ctx: BuildContext) -> None:
        self._ctx = ctx
        self._partial = ""

    def __call__(self, text: str) -> None:
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            if line.strip():
                self._ctx.emit(LogLine("console", line.rstrip()))


class FirstBoot:
    name = "first-boot"
    description = "set the root password on the console"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        pb = ctx.playbook

        show = ConsoleLines(ctx)
        stream = open_vm_console(ctx)
        boot = pb.timeouts.boot
        try:
            if pb.vm.first_boot == "console":
                password = generate_password()
                steps = dialog.first_boot_dialog(password, boot_timeout=boot)
            else:
                password = Secret(
                    os.environ.get(pb.vm.default_password_env) or DEFAULT_DDK_PASSWORD
                )
                steps = dialog.login_dialog(password, boot_timeout=boot)
            dialog.run_dialog(stream, steps, on_text=show)
            ctx.guest_password = password
            ctx.guest_host_key = fingerprint(dialog.read_host_key(stream))
            stream.write(b"exit\r")  # never leave a root shell open on the console
        finally:
            stream.close()

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: the password lives in the VM, which the image stage removes."""
