"""Stage: get a DDK VM on the host, by cloning a template or importing the image (undo: remove it)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

from ..errors import StorageError
from ..events import ObjectCreated, ObjectRemoved, Progress
from ..xapi import imports, vm
from .context import BuildContext, ImageChoice


@contextlib.contextmanager
def image_streams(choice: ImageChoice) -> Iterator[Callable[[], Any]]:
    """A factory of fresh, sized XVA streams for the chosen image, valid inside the block.

    A DDK ISO stays open (read in place, converted on the fly) until the block ends.
    """
    assert choice.path is not None
    if choice.kind == "iso":
        from ..image.ddk_iso import open_ddk_iso

        with open_ddk_iso(choice.path) as iso:
            yield iso.to_xva
        return
    opened: list[_FileStream] = []

    def fresh() -> _FileStream:
        opened.append(_FileStream(choice.path))  # type: ignore[arg-type]
        return opened[-1]

    try:
        yield fresh
    finally:
        for stream in opened:
            stream.close()


class _FileStream:
    """An XVA file as a sized stream (read in place, never loaded)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._size = path.stat().st_size
        self._file: Optional[BinaryIO] = None

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        if self._file is None:
            self._file = open(self._path, "rb")  # noqa: SIM115 - closed by close()
        return self._file.read(n)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class ProvisionVm:
    name = "image"
    description = "import or clone the DDK"
    keepable = True

    def run(self, ctx: BuildContext) -> None:
        pb = ctx.playbook
        sr = vm.find_sr(ctx.xs, pb.vm.sr)
        tags = ctx.identity.tags()
        ctx.vm_name = f"xsddkvm-{ctx.identity.build_id} DDK build"
        if ctx.image.kind == "template":
            assert ctx.image.template is not None
            with ctx.xs.doing("cloning the golden DDK template"):
                ref = str(ctx.xs.api.VM.clone(ctx.image.template, ctx.vm_name))
            ctx.vm = ref
            ctx.cloned_from_template = True
            vm.tag(ctx.xs, "VM", ref, tags)
            with ctx.xs.doing("marking the clone as a VM"):
                ctx.xs.api.VM.set_is_a_template(ref, False)
        else:
            self._import(ctx, sr)
        for vdi in vm.disks_of(ctx.xs, ctx.vm):  # type: ignore[arg-type]
            vm.tag(ctx.xs, "VDI", vdi, tags)
        with ctx.xs.doing("reading the new VM"):
            ctx.vm_uuid = str(ctx.xs.api.VM.get_uuid(ctx.vm))
        pv_args = "noninteractive" if pb.vm.first_boot == "noninteractive" else None
        vm.configure(
            ctx.xs,
            ctx.vm,  # type: ignore[arg-type]
            name=ctx.vm_name,
            memory_mib=pb.vm.memory_mib,
            vcpus=pb.vm.vcpus,
            pv_args=pv_args,
        )

    def _import(self, ctx: BuildContext, sr: str) -> None:
        label = ctx.image.label or str(ctx.image.path)
        with image_streams(ctx.image) as fresh_stream:
            size = len(fresh_stream())
            free = vm.sr_free_bytes(ctx.xs, sr)
            if free < size:
                raise StorageError(
                    f"The SR on {ctx.xs.host_label} has {free // 2**20} MiB free but the DDK "
                    f"image {label} needs about {size // 2**20} MiB.",
                    "Free space on that SR, or choose another one with vm.sr in the playbook.",
                    code="SR_FULL",
                    params=[str(size), str(free)],
                )
            ref = imports.import_vm(
                ctx.xs,
                fresh_stream,
                sr=sr,
                timeout=ctx.playbook.timeouts.import_,
                on_progress=lambda done, total: ctx.emit(Progress("upload", done, total)),
            )
        ctx.vm = ref
        vm.tag(ctx.xs, "VM", ref, ctx.identity.tags())
        ctx.emit(ObjectCreated("VM", ref, label))
        with ctx.xs.doing("checking the imported VM"):
            if ctx.xs.api.VM.get_is_a_template(ref):
                ctx.xs.api.VM.set_is_a_template(ref, False)

    def undo(self, ctx: BuildContext) -> None:
        if not ctx.vm:
            return
        vdis = vm.destroy_with_disks(ctx.xs, ctx.vm)
        ctx.emit(ObjectRemoved("VM", ctx.vm))
        for vdi in vdis:
            ctx.emit(ObjectRemoved("VDI", vdi))
        ctx.vm = None
