"""Stage: get a DDK VM on the host, by cloning a template or importing the image (undo: remove it)."""

from __future__ import annotations

from typing import Any

from ..errors import ImageError
from ..events import ObjectCreated, ObjectRemoved, Progress
from ..xapi import imports, vm
from .context import BuildContext


def open_image_stream(ctx: BuildContext) -> Any:
    """A fresh, sized XVA stream for the chosen image (current XVA, or a DDK ISO converted)."""
    choice = ctx.image
    assert choice.path is not None
    if choice.kind == "iso":
        from ..image.ddk_iso import open_ddk_iso

        return open_ddk_iso(choice.path).to_xva()
    return _FileStream(choice.path)


class _FileStream:
    """An XVA file as a sized stream (read in place, never loaded)."""

    def __init__(self, path: Any) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed at EOF
        self._size = path.stat().st_size

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        if not data:
            self._file.close()
        return data


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
        size = len(open_image_stream(ctx))
        free = vm.sr_free_bytes(ctx.xs, sr)
        if free < size:
            from ..errors import StorageError

            raise StorageError(
                f"The SR on {ctx.xs.host_label} has {free // 2**20} MiB free but the DDK image "
                f"{label} needs about {size // 2**20} MiB.",
                "Free space on that SR, or choose another one with vm.sr in the playbook.",
                code="SR_FULL",
                params=[str(size), str(free)],
            )

        def progress(done: int, total: int) -> None:
            ctx.emit(Progress("upload", done, total))

        ref = imports.import_vm(
            ctx.xs,
            lambda: open_image_stream(ctx),
            sr=sr,
            timeout=ctx.playbook.timeouts.import_,
            on_progress=progress,
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


def check_image_readable(ctx: BuildContext) -> None:
    """Fail early, before touching the host, when the image cannot be read."""
    if ctx.image.kind == "template":
        return
    try:
        len(open_image_stream(ctx))
    except OSError as exc:
        raise ImageError(f"Cannot read the DDK image {ctx.image.path}: {exc}.") from None
