"""Stage: start the DDK VM (undo: hard shutdown)."""

from __future__ import annotations

from ..xapi import vm
from .context import BuildContext


class Boot:
    name = "boot"
    description = "start the DDK VM"
    keepable = True

    def run(self, ctx: BuildContext) -> None:
        assert ctx.vm is not None
        with ctx.xs.doing("starting the DDK VM"):
            ctx.xs.api.VM.start(ctx.vm, False, False)

    def undo(self, ctx: BuildContext) -> None:
        if ctx.vm:
            vm.stop(ctx.xs, ctx.vm)
