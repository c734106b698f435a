"""Stage: give the DDK a NIC on the chosen network (undo: remove it)."""

from __future__ import annotations

from ..events import ObjectCreated
from ..xapi import vm
from .context import BuildContext


class AddNetwork:
    name = "network"
    description = "add a network interface"
    keepable = True

    def run(self, ctx: BuildContext) -> None:
        assert ctx.vm is not None
        network = vm.find_network(ctx.xs, ctx.playbook.vm.network)
        with ctx.xs.doing("checking the VM's network interfaces"):
            existing = list(ctx.xs.api.VM.get_VIFs(ctx.vm))
        for vif in existing:  # a golden template keeps no NIC of ours; drop strays
            with ctx.xs.doing("removing a stale network interface"):
                ctx.xs.api.VIF.destroy(vif)
        ctx.vif, ctx.vif_device = vm.add_vif(ctx.xs, ctx.vm, network, ctx.identity.tags())
        ctx.emit(ObjectCreated("VIF", ctx.vif, f"device {ctx.vif_device}"))

    def undo(self, ctx: BuildContext) -> None:
        if ctx.vif and ctx.vm and vm.power_state(ctx.xs, ctx.vm) == "Halted":
            with ctx.xs.doing("removing the network interface"):
                ctx.xs.api.VIF.destroy(ctx.vif)
        ctx.vif = None
