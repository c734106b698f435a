"""Stage: check the DDK against the build target before anything is built (matching.py rules).

A live-host target needs nothing more here. An installer target (``target.installer``, a driver
disk for a fresh install) needs the release's own DDK with its base kernel, whatever hotfixes
the build host runs (ddk.md §5).
"""

from __future__ import annotations

import re

from ..errors import MismatchError
from ..events import Notice
from ..fingerprint import HostFingerprint
from ..matching import CatalogEntry, differences, requirement_for
from .context import BuildContext

# /etc/redhat-release of a DDK: "XenServer DDK release 8.2.1-58 (xenenterprise)"
RELEASE = re.compile(r"release\s+(?P<version>[^\s-]+)-(?P<build>\S+)")


class CheckTarget:
    name = "target"
    description = "check the DDK against the build target"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        installer = ctx.playbook.target.installer
        if not installer:
            ctx.ddk["target"] = "host"
            return
        found = RELEASE.search(ctx.ddk.get("release", ""))
        version, build = (found.group("version"), found.group("build")) if found else ("", "")
        ddk = CatalogEntry(ctx.image.label, version, build, ctx.ddk.get("kernel", ""))
        facts = ctx.host_facts
        host = HostFingerprint(
            ctx.xs.url,
            facts.get("product_version", ""),
            facts.get("build_number", ""),
            facts.get("linux", ""),
        )
        req = requirement_for(host, installer)
        wrong = differences(ddk, req)
        if wrong:
            raise MismatchError(
                f"target.installer is {installer}, but the DDK ({ddk.describe()}, from "
                f"{ctx.image.label}) cannot build its driver disk: its "
                f"{'; '.join(text for _, text in wrong)}.",
                f"Use the {req.describe()} as image.source (the release's own DDK, without "
                "hotfix kernels), or correct target.installer.",
            )
        ctx.ddk["target"] = f"installer {installer}"
        ctx.ddk["target_kernel"] = req.kernel
        kernel = (
            f"its base kernel {req.kernel}"
            if req.kernel
            else "its version (xsddkvm does not know its base kernel)"
        )
        ctx.emit(
            Notice(
                f"Target: the XenServer {installer} installer. The DDK {ddk.describe()} matches "
                f"{kernel}; the build host's hotfixes (kernel {host.linux or 'unknown'}, build "
                f"{host.build_number or 'unknown'}) are ignored."
            )
        )

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: the check creates nothing."""
