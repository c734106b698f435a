"""Golden DDK templates: a DDK booted once, trusting xsddkvm's key, kept as a template.

``prepare`` imports a DDK image, answers its first boot, installs our public key, reads the
DDK's identity and seals the halted VM as a template tagged in ``other_config``. A warm build
clones that template instead of uploading the image (``warm_stages``), and logs in with the
key, pinned to the host key recorded at prepare time. Templates are found by the image's
SHA-256 tag, never by name, so a template made from another image is never used.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional, Sequence

from . import __version__, keys
from .config import Playbook
from .errors import ConfigError, GuestError, ImageError
from .events import EventSink, Notice, Result
from .guest.ssh import GuestSSH
from .matching import CatalogEntry, entry_from_image
from .stages.connect import Connect
from .stages.context import BuildContext, ImageChoice, _nothing
from .stages.first_boot import FirstBoot
from .stages.pipeline import run_stages
from .stages.reach_guest import REACH_GUEST
from .xapi import vm
from .xapi.session import XapiSession
from .xapi.tasks import destroy_task, wait_for_task
from .xapi.vm import TAG, BuildIdentity

if TYPE_CHECKING:
    from .build import HostAccess

GOLDEN = f"{TAG}.golden"
# Build-identity tags a template must not carry: they would make it look like a build leftover.
BUILD_ONLY_TAGS = (f"{TAG}.build_id", f"{TAG}.pid")
_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_RELEASE = re.compile(r"release\s+(?P<version>\d[\w.]*)-(?P<build>\S+)")
RELEASE_COMMAND = 'cat "${XSDDKVM_SIM_ROOT:-}/etc/redhat-release"'
KERNEL_PACKAGE_COMMAND = "rpm -qa --qf '%{NAME}-%{VERSION}-%{RELEASE}\\n' 'kernel*devel*'"
SIM_IDENTITY_COMMAND = 'cat "${XSDDKVM_SIM_ROOT:-}/etc/xsddkvm-sim/ddk.json"'


@dataclasses.dataclass(frozen=True)
class TemplateInfo:
    """A golden template as its tags describe it."""

    ref: str
    uuid: str
    name: str
    image_sha256: str
    ddk_version: str
    ddk_build: str
    guest_kernel: str
    guest_kernel_package: str
    ssh_host_key: str
    xsddkvm_version: str
    created: str

    @classmethod
    def from_record(cls, ref: str, rec: dict[str, Any]) -> TemplateInfo:
        tags = rec.get("other_config", {})

        def tag(name: str) -> str:
            return str(tags.get(f"{TAG}.{name}", ""))

        return cls(
            ref=ref,
            uuid=str(rec["uuid"]),
            name=str(rec["name_label"]),
            image_sha256=tag("image_sha256"),
            ddk_version=tag("ddk_version"),
            ddk_build=tag("ddk_build"),
            guest_kernel=tag("guest_kernel"),
            guest_kernel_package=tag("guest_kernel_package"),
            ssh_host_key=tag("ssh_host_key"),
            xsddkvm_version=tag("version"),
            created=tag("created"),
        )

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def catalog_entry(self) -> CatalogEntry:
        return CatalogEntry(
            image=f"template:{self.uuid}",
            product_version=self.ddk_version,
            build_number=self.ddk_build,
            kernel=self.guest_kernel,
            kernel_package=self.guest_kernel_package,
            digest=self.image_sha256,
            template_ref=self.ref,
        )


def is_golden(rec: dict[str, Any]) -> bool:
    """A VM record of a golden template (a clone inherits the tags, so only templates count)."""
    return bool(rec.get("is_a_template")) and rec.get("other_config", {}).get(GOLDEN) == "true"


def lookup_vm(xs: XapiSession, uuid: str) -> Optional[tuple[str, dict[str, Any]]]:
    """``(ref, record)`` of the VM ``uuid``, or None when the pool has no such VM."""
    if not _UUID.fullmatch(uuid):  # it goes into a query string, which has no escapes
        raise ConfigError(f"{uuid!r} is not a VM UUID.", "Copy it from `xsddkvm image list URL`.")
    with xs.doing("looking up the template"):
        # Filter on the host side (xapi-records.md §5, ocaml/database/db_filter.ml).
        found = xs.api.VM.get_all_records_where(f'field "uuid" = "{uuid}"')
    return next(iter(found.items()), None)


def list_templates(xs: XapiSession) -> list[TemplateInfo]:
    """Every golden template on the pool, newest first."""
    with xs.doing("listing golden DDK templates"):
        records = xs.api.VM.get_all_records_where('field "is_a_template" = "true"')
    found = [TemplateInfo.from_record(ref, rec) for ref, rec in records.items() if is_golden(rec)]
    return sorted(found, key=lambda t: t.created, reverse=True)


def find_matching(xs: XapiSession, digest: str) -> Optional[TemplateInfo]:
    """The newest golden template made from the image with SHA-256 ``digest``, if any."""
    if not digest:
        return None
    return next((t for t in list_templates(xs) if t.image_sha256 == digest), None)


def template_by_uuid(xs: XapiSession, uuid: str) -> TemplateInfo:
    """The golden template ``uuid``; ``ConfigError`` if there is none or it is not golden."""
    found = lookup_vm(xs, uuid)
    if found is None or not is_golden(found[1]):
        what = "is not a golden DDK template made by xsddkvm" if found else "does not exist"
        raise ConfigError(
            f"VM {uuid} on {xs.host_label} {what}.",
            "List golden templates with `xsddkvm image list URL`.",
        )
    return TemplateInfo.from_record(*found)


def remove(xs: XapiSession, uuid: str) -> list[str]:
    """Destroy the golden template ``uuid`` and its disks; returns the VDIs removed."""
    info = template_by_uuid(xs, uuid)
    return vm.destroy_with_disks(xs, info.ref)


# -- prepare: stages after SSH -------------------------------------------------------------


class InstallKey:
    name = "install-key"
    description = "trust xsddkvm's SSH key in the DDK"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        key = keys.ensure_key()
        line = shlex.quote(keys.public_line(key))
        ctx.ssh.run(
            "umask 077 && mkdir -p ~/.ssh && chmod 700 ~/.ssh && touch ~/.ssh/authorized_keys && "
            f"(grep -qxF {line} ~/.ssh/authorized_keys || echo {line} >> ~/.ssh/authorized_keys) "
            "&& chmod 600 ~/.ssh/authorized_keys"
        )
        # Prove the key works now, not at the first warm build.
        assert ctx.guest_ip is not None
        GuestSSH.connect(
            ctx.guest_ip,
            port=ctx.ssh_port,
            pkey=key,
            expected_host_key=ctx.guest_host_key,
            connect_retry_seconds=ctx.playbook.timeouts.ssh,
        ).close()

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: the key lives in the VM, which the image stage removes."""


class ReadIdentity:
    name = "identity"
    description = "read the DDK's release and kernel"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        release = "\n".join(ctx.ssh.run(RELEASE_COMMAND, check=False).stdout_tail)
        found = _RELEASE.search(release)
        if found:
            ctx.ddk["version"], ctx.ddk["build"] = found.group("version"), found.group("build")
        elif ctx.image.path is not None:
            entry = entry_from_image(ctx.image.path)
            ctx.ddk["version"], ctx.ddk["build"] = entry.product_version, entry.build_number
        if not ctx.ddk.get("version"):
            raise ImageError(
                f"Cannot tell which DDK {ctx.image.label} is: /etc/redhat-release says "
                f"{release.strip()[:80]!r} and the image names no DDK version.",
                "Use the DDK image as Citrix ships it (XenServer-<version>-DDK.iso).",
            )
        uname = [x for x in ctx.ssh.run("uname -r").stdout_tail if x.strip()]
        ctx.ddk["kernel"] = uname[-1].strip() if uname else ""
        ctx.ddk["kernel_package"] = self._kernel_package(ctx)

    def _kernel_package(self, ctx: BuildContext) -> str:
        listed = ctx.ssh.run(KERNEL_PACKAGE_COMMAND, check=False).stdout_tail
        packages = sorted(x.strip() for x in listed if x.strip().startswith("kernel"))
        if packages:
            return packages[-1]
        sim = ctx.ssh.run(SIM_IDENTITY_COMMAND, check=False)
        try:  # the simulated DDK has no rpm database; it says what it would hold
            return str(json.loads("\n".join(sim.stdout_tail)).get("kernel_package", ""))
        except ValueError:
            return ""

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo."""


class SealTemplate:
    name = "seal"
    description = "shut the DDK down and keep it as a golden template"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        assert ctx.vm is not None
        ctx.ssh.close()
        ctx.ssh = None
        # A clean shutdown, so the guest flushes its disk (and the ~/.ssh we wrote) first.
        with ctx.xs.doing("shutting the DDK down cleanly"):
            task = ctx.xs.api.Async.VM.clean_shutdown(ctx.vm)
        try:
            wait_for_task(
                ctx.xs, task, action="shutting the DDK down", timeout=ctx.playbook.timeouts.boot
            )
        finally:
            destroy_task(ctx.xs, task)
        if ctx.vif:  # a template keeps no NIC of ours: each clone gets its own
            with ctx.xs.doing("removing the network interface"):
                ctx.xs.api.VIF.destroy(ctx.vif)
            ctx.vif = None
        version, build = ctx.ddk["version"], ctx.ddk.get("build", "")
        with ctx.xs.doing("naming the golden template"):
            ctx.xs.api.VM.set_name_label(ctx.vm, f"xsddkvm golden DDK {version}-{build}")
            ctx.xs.api.VM.set_name_description(
                ctx.vm, f"Prepared by xsddkvm {__version__} from {ctx.image.label}."
            )
        # make_into_template needs Halted; a template still accepts other_config changes and
        # destroy (xapi-records.md §4.1-4.2, ocaml/xapi/xapi_vm_lifecycle.ml).
        with ctx.xs.doing("making the DDK a template"):
            ctx.xs.api.VM.set_is_a_template(ctx.vm, True)
        _retag(ctx.xs, "VM", ctx.vm, self.tags(ctx))
        vm_uuid = ctx.vm_uuid
        for vdi in vm.disks_of(ctx.xs, ctx.vm):
            _retag(ctx.xs, "VDI", vdi, {GOLDEN: "true", f"{TAG}.golden_template": vm_uuid})
        ctx.vm = None  # the template outlives this run: nothing for the image stage to undo

    @staticmethod
    def tags(ctx: BuildContext) -> dict[str, str]:
        return {
            GOLDEN: "true",
            f"{TAG}.image_sha256": ctx.image.digest,
            f"{TAG}.ddk_version": ctx.ddk["version"],
            f"{TAG}.ddk_build": ctx.ddk.get("build", ""),
            f"{TAG}.guest_kernel": ctx.ddk.get("kernel", ""),
            f"{TAG}.guest_kernel_package": ctx.ddk.get("kernel_package", ""),
            f"{TAG}.ssh_host_key": ctx.guest_host_key or "",
            f"{TAG}.version": __version__,
        }

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: until the last step the image stage still owns the VM."""


def _retag(xs: XapiSession, cls: str, ref: str, tags: dict[str, str]) -> None:
    with xs.doing(f"tagging the golden {cls}"):
        api = getattr(xs.api, cls)
        other = {k: v for k, v in api.get_other_config(ref).items() if k not in BUILD_ONLY_TAGS}
        api.set_other_config(ref, {**other, **tags})


PREPARE_STAGES = (*REACH_GUEST, InstallKey, ReadIdentity, SealTemplate)


def prepare(
    pb: Playbook,
    access: HostAccess,
    emit: EventSink,
    *,
    image: Optional[ImageChoice] = None,
    signals_deferred: Callable[[], ContextManager[None]] = _nothing,
) -> TemplateInfo:
    """Make (or find) the golden template for the playbook's DDK image on the host."""
    from .build import data_dir, resolve_image

    choice = image or resolve_image(pb)
    if choice.kind == "template":
        raise ConfigError(
            f"{pb.path}: image.source: {choice.label} is already a template.",
            "Point image.source at the DDK .iso or .xva to prepare a golden template from.",
        )
    with access.session() as xs:
        existing = find_matching(xs, choice.digest)
    if existing is not None:
        emit(Notice(f"Golden template {existing.uuid} already holds {choice.label}."))
        emit(Result("image prepare", True, existing.to_dict()))
        return existing
    ctx = BuildContext(
        playbook=pb,
        xs=access.session(),
        identity=BuildIdentity.new("golden"),
        emit=emit,
        image=choice,
        output_dir=data_dir(),
        guest_ssh_port=access.guest_ssh_port,
        signals_deferred=signals_deferred,
    )
    run_stages([stage() for stage in PREPARE_STAGES], ctx)
    with access.session() as xs:  # SealTemplate left vm_uuid: the template's
        info = template_by_uuid(xs, ctx.vm_uuid)
    emit(Result("image prepare", True, info.to_dict()))
    return info


# -- warm builds ---------------------------------------------------------------------------


def choose_image(xs: XapiSession, pb: Playbook, choice: ImageChoice) -> ImageChoice:
    """The golden template made from ``choice``'s image, if one exists and the playbook allows."""
    if pb.image.golden == "never" or choice.kind == "template":
        return choice
    info = find_matching(xs, choice.digest)
    if info is None:
        return choice
    return ImageChoice(
        "template",
        template=info.ref,
        digest=choice.digest,
        label=f"{choice.label} (golden template {info.uuid})",
    )


class ChooseGolden:
    name = "golden"
    description = "look for a golden DDK template"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        chosen = choose_image(ctx.xs, ctx.playbook, ctx.image)
        if chosen is not ctx.image:
            ctx.emit(Notice(f"Cloning {chosen.label} instead of importing the image."))
        ctx.image = chosen

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo."""


class WarmFirstBoot:
    """First boot of a clone of a golden template: no console, key login, known host key.

    Any other VM (imported, or cloned from a template that is not golden) takes the console
    path of ``FirstBoot``.
    """

    name = "first-boot"
    description = "set the root password on the console (skipped for golden templates)"
    keepable = False

    def __init__(self) -> None:
        self._cold = FirstBoot()

    def run(self, ctx: BuildContext) -> None:
        info = self._golden_source(ctx)
        if info is None:
            self._cold.run(ctx)
            return
        if not info.ssh_host_key:
            raise GuestError(
                f"The golden template {info.uuid} records no SSH host key to pin.",
                f"Remove it with `xsddkvm image rm URL {info.uuid}` and prepare it again.",
            )
        keys.load_key()  # fail now, not after the boot, if the key is gone or unsafe
        ctx.guest_password = None
        ctx.guest_host_key = info.ssh_host_key

    @staticmethod
    def _golden_source(ctx: BuildContext) -> Optional[TemplateInfo]:
        if not ctx.cloned_from_template or ctx.image.template is None:
            return None
        with ctx.xs.doing("reading the template's tags"):
            rec = ctx.xs.api.VM.get_record(ctx.image.template)
        return TemplateInfo.from_record(ctx.image.template, rec) if is_golden(rec) else None

    def undo(self, ctx: BuildContext) -> None:
        self._cold.undo(ctx)


def warm_stages(stages: Sequence[type]) -> list[type]:
    """``stages`` (build.STAGES) with the golden-template choice after login and the
    console-free first boot in place of ``FirstBoot``."""
    warm: list[type] = []
    for stage in stages:
        warm.append(WarmFirstBoot if stage is FirstBoot else stage)
        if stage is Connect:
            warm.append(ChooseGolden)
    return warm
