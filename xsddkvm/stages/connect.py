"""Stage: log in to the pool master (undo: log out, always)."""

from __future__ import annotations

from .context import BuildContext


class Connect:
    name = "connect"
    description = "log in to the host"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        ctx.xs.login()
        with ctx.xs.doing("reading the host's version"):
            pool = ctx.xs.api.pool.get_all()[0]
            master = ctx.xs.api.pool.get_master(pool)
            version = ctx.xs.api.host.get_software_version(master)
        for key in ("product_brand", "product_version", "build_number", "linux", "xen", "xapi"):
            if key in version:
                ctx.host_facts[key] = str(version[key])

    def undo(self, ctx: BuildContext) -> None:
        ctx.xs.logout()
