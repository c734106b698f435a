"""Run stages in order; on failure or interrupt undo the completed ones in reverse (Packer's multistep)."""

from __future__ import annotations

import time
from typing import Protocol, Sequence

from ..errors import CleanupError, XsddkvmError
from ..events import Notice, StageFinished, StageStarted, StageUndone
from .context import BuildContext


class Stage(Protocol):
    name: str
    description: str
    keepable: bool  # undone only when the VM is not kept (--keep-vm)

    def run(self, ctx: BuildContext) -> None: ...

    def undo(self, ctx: BuildContext) -> None: ...


def run_stages(stages: Sequence[Stage], ctx: BuildContext) -> None:
    """Run ``stages``; always undo what must be undone, keeping the VM per ``ctx.keep_vm``."""
    done: list[Stage] = []
    failed = True
    try:
        for stage in stages:
            ctx.emit(StageStarted(stage.name, stage.description))
            started = time.monotonic()
            ctx.current_stage = stage.name
            stage.run(ctx)
            done.append(stage)
            seconds = time.monotonic() - started
            ctx.timings[stage.name] = round(seconds, 3)
            ctx.emit(StageFinished(stage.name, round(seconds, 3)))
        failed = False
    finally:
        keep = ctx.keep_vm == "always" or (ctx.keep_vm == "on-failure" and failed)
        undo_all(done, ctx, keep=keep, failed=failed)


def undo_all(done: list[Stage], ctx: BuildContext, *, keep: bool, failed: bool) -> None:
    """Undo in reverse; a failing undo is reported and the others still run."""
    problems: list[str] = []
    with ctx.signals_deferred():
        for stage in reversed(done):
            if keep and stage.keepable:
                continue
            try:
                stage.undo(ctx)
                ctx.emit(StageUndone(stage.name))
            except XsddkvmError as exc:
                problems.append(f"{stage.name}: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                problems.append(f"{stage.name}: {type(exc).__name__}: {exc}")
    if keep and ctx.vm:
        ctx.emit(Notice(ctx.kept_vm_message(), "warning"))
    if problems:
        message = "Could not remove everything this build created: " + "; ".join(problems) + "."
        hint = "Run `xsddkvm gc URL --dry-run` to list leftovers, then `xsddkvm gc URL` to remove them."
        if failed:
            ctx.emit(Notice(f"{message} {hint}", "warning"))
        else:
            raise CleanupError(message, hint)
