"""Stage: wait for the guest's IP on *our* VIF; ask the console if the guest agent is silent."""

from __future__ import annotations

import time
from typing import Optional

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from ..errors import GuestError, XsddkvmError
from ..events import Notice, Waiting
from ..guest import dialog
from ..xapi import vm
from .context import BuildContext
from .first_boot import open_vm_console


class WaitForIp:
    name = "wait-ip"
    description = "wait for the guest's IP address"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        assert ctx.vm is not None
        started = time.monotonic()

        def poll() -> Optional[str]:
            ctx.emit(Waiting("ip", round(time.monotonic() - started, 1)))
            return vm.guest_ip(ctx.xs, ctx.vm, ctx.vif_device)  # type: ignore[arg-type]

        timeout = ctx.playbook.timeouts.ip
        ip = Retrying(
            retry=retry_if_result(lambda r: r is None),
            wait=wait_exponential(multiplier=0.1, max=2),
            stop=stop_after_delay(timeout),
            retry_error_callback=lambda _s: None,
        )(poll)
        if ip is None:
            agent = vm.has_guest_agent(ctx.xs, ctx.vm)
            ip = self._ask_console(ctx)
            if ip is None:
                missing = (
                    "the guest agent reports no address for our network interface"
                    if agent
                    else "the guest agent (xe-guest-utilities) never reported"
                )
                raise GuestError(
                    f"The DDK VM on {ctx.xs.host_label} has no IP address after {timeout:.0f} s: "
                    f"{missing}, and its console shows none either.",
                    "Check that the network in vm.network has a DHCP server (or use the "
                    "management network), and that the DDK image has guest tools installed; "
                    "raise timeouts.ip if the guest is just slow.",
                )
            ctx.emit(Notice(f"Guest agent silent; the console reports IP {ip}.", "warning"))
        ctx.guest_ip = ip

    def _ask_console(self, ctx: BuildContext) -> Optional[str]:
        if ctx.guest_password is None:
            return None
        try:
            stream = open_vm_console(ctx)
            try:
                dialog.run_dialog(stream, dialog.login_dialog(ctx.guest_password, boot_timeout=30))
                addresses = dialog.read_ipv4(stream)
                stream.write(b"exit\r")
            finally:
                stream.close()
        except XsddkvmError:
            return None
        return addresses[0] if addresses else None

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo."""
