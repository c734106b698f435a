"""``xsddkvm install PACK.iso --host URL``: install a built pack on hosts. ``cli.py`` calls
``register``.

Part of the CLI layer: parses options, calls ``install.install_pack``, renders the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click


def register(main: click.Group) -> None:
    """Add ``install`` to the ``xsddkvm`` command group."""
    main.add_command(install)


@click.command()
@click.argument("pack", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", "url", required=True, help="Pool master URL (https://...).")
@click.option(
    "--hosts",
    "hosts",
    multiple=True,
    help="Install only on these hosts of the pool (name, UUID or address; repeat or use commas). "
    "Default: every host.",
)
@click.option("--username", default="root", show_default=True, help="XenAPI user.")
@click.option(
    "--password-env",
    default="XSDDKVM_PASSWORD",
    show_default=True,
    help="Environment variable holding the password.",
)
@click.option("--tls-fingerprint", help="SHA-256 fingerprint of the certificate to pin.")
@click.option("--insecure", is_flag=True, help="Do not verify the TLS certificate (warns).")
@click.option("--json", "json_output", is_flag=True, help="Emit one JSON event per line on stdout.")
def install(pack: Path, url: str, hosts: tuple[str, ...], json_output: bool, **host: Any) -> None:
    """Install PACK on the pool at --host: an update pack through XenAPI (upload, precheck,
    apply, clean up); for a legacy 6.x pack, print the dom0 commands that install it."""
    from .cli import Env, _password_prompt, run_command

    env = Env(json_output)

    def body() -> None:
        from .cli_fleet import _host_playbook
        from .cli_hosts import open_host
        from .events import Result
        from .install import install_pack

        chosen: Optional[list[str]] = [
            name.strip() for item in hosts for name in item.split(",") if name.strip()
        ] or None
        sink = env.sink()
        with open_host(_host_playbook(url, **host), sink, _password_prompt) as (access, _image):
            result = install_pack(pack, access, chosen, sink)
        if json_output:
            sink(Result("install", True, result.to_dict()))
            return
        if result.kind == "legacy":
            click.echo("\n".join(result.commands))
            return
        for outcome in result.hosts:
            line = f"{outcome.host}: {outcome.status}"
            click.echo(f"{line} ({outcome.code}: {outcome.detail})" if outcome.code else line)
        if result.guidance:
            click.echo(f"after-apply guidance: {', '.join(result.guidance)}")

    run_command(env, body)
