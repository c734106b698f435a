"""CLI commands for many builds: ``image prepare|list|rm``, ``host info`` and ``nightly``.

Part of the CLI layer (it may start a simulator for ``sim://`` URLs); ``cli.py`` calls
``register(main)``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click

from .cli import Env, _password_prompt, run_command
from .config import HostConfig, ImageConfig, Playbook

NOT_AN_IMAGE = "template:none"  # host-only commands need no DDK image


def _host_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--username", default="root", show_default=True, help="XenAPI user."),
        click.option(
            "--password-env",
            default="XSDDKVM_PASSWORD",
            show_default=True,
            help="Environment variable holding the password.",
        ),
        click.option("--tls-fingerprint", help="SHA-256 fingerprint of the certificate to pin."),
        click.option("--insecure", is_flag=True, help="Do not verify the TLS certificate (warns)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _host_playbook(
    url: str, username: str, password_env: str, tls_fingerprint: Optional[str], insecure: bool
) -> Playbook:
    host = HostConfig(
        url=url,
        username=username,
        password_env=password_env,
        tls_fingerprint=tls_fingerprint,
        insecure=insecure,
    )
    return Playbook(host=host, image=ImageConfig(source=NOT_AN_IMAGE))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def register(main: click.Group) -> None:
    """Add this module's commands to ``main`` (its ``host`` group gets ``info``)."""
    main.add_command(image)
    main.add_command(nightly)
    host_group = main.commands.get("host")
    if isinstance(host_group, click.Group):
        host_group.add_command(host_info)


@click.group()
def image() -> None:
    """Golden DDK templates: prepare once, clone on every build."""


@image.command("prepare")
@click.argument("playbook", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", "host_url", help="Host URL; overrides host.url in the playbook.")
@click.option("--insecure", is_flag=True, help="Do not verify the host's TLS certificate (warns).")
@click.option("--json", "json_output", is_flag=True, help="Emit one JSON event per line on stdout.")
def image_prepare(
    playbook: Path, host_url: Optional[str], insecure: bool, json_output: bool
) -> None:
    """Import PLAYBOOK's DDK image, boot it once and keep it as a golden template."""
    env = Env(json_output)

    def body() -> None:
        from .cli_hosts import open_host
        from .config import apply_overrides, load_playbook
        from .golden import prepare

        pb = apply_overrides(load_playbook(playbook), host=host_url, insecure=insecure)
        sink = env.sink()
        with open_host(pb, sink, _password_prompt) as (access, chosen):
            info = prepare(pb, access, sink, image=chosen, signals_deferred=env.signals_deferred)
        if not json_output:
            click.echo(info.uuid)

    run_command(env, body)


@image.command("list")
@click.argument("url")
@_host_options
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def image_list(url: str, json_output: bool, **host: Any) -> None:
    """List the golden DDK templates on URL."""
    env = Env(json_output)

    def body() -> None:
        from .golden import list_templates

        with _session(env, _host_playbook(url, **host)) as xs:
            found = list_templates(xs)
        if json_output:
            _echo_json([t.to_dict() for t in found])
            return
        for t in found:
            click.echo(
                f"{t.uuid}  DDK {t.ddk_version}-{t.ddk_build}  kernel {t.guest_kernel}  "
                f"image {t.image_sha256[:12]}  created {t.created}"
            )

    run_command(env, body)


@image.command("rm")
@click.argument("url")
@click.argument("uuid")
@_host_options
def image_rm(url: str, uuid: str, **host: Any) -> None:
    """Remove the golden template UUID (and its disks) from URL."""
    env = Env()

    def body() -> None:
        from .golden import remove

        with _session(env, _host_playbook(url, **host)) as xs:
            vdis = remove(xs, uuid)
        click.echo(f"Removed template {uuid} and {len(vdis)} disk(s).")

    run_command(env, body)


@click.command("info")
@click.argument("url")
@_host_options
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def host_info(url: str, json_output: bool, **host: Any) -> None:
    """Print URL's fingerprint: version, build, dom0 kernel and applied updates."""
    env = Env(json_output)

    def body() -> None:
        from .fingerprint import read_fingerprint

        with _session(env, _host_playbook(url, **host)) as xs:
            fp = read_fingerprint(xs)
        data = {**fp.to_dict(), "url": url}
        if json_output:
            _echo_json(data)
            return
        for key in ("url", "product_brand", "product_version", "build_number", "linux"):
            click.echo(f"{key}: {data[key]}")
        click.echo(f"updates: {', '.join(fp.updates) or 'none'}")
        click.echo(f"digest: {fp.digest}")

    run_command(env, body)


@contextlib.contextmanager
def _session(env: Env, pb: Playbook) -> Iterator[Any]:
    from .cli_hosts import open_host

    with open_host(pb, env.sink(), _password_prompt) as (access, _image):
        with access.session() as xs:
            yield xs


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_output", is_flag=True, help="Emit one JSON event per line on stdout.")
def nightly(config: Path, json_output: bool) -> None:
    """Rebuild the pack for every host in CONFIG whose software, source or DDK changed.

    Exit status 0: nothing to do; 20: at least one host rebuilt; 21: at least one host failed.
    """
    env = Env(json_output)

    def body() -> int:
        from .nightly import load_config, run_nightly
        from .nightly_report import summary

        run = run_nightly(load_config(config), env.sink(), open_host=_open_fleet_host)
        if not json_output:
            click.echo(summary(run))
        return int(run.exit_code)

    run_command(env, body)


@contextlib.contextmanager
def _open_fleet_host(entry: Any) -> Iterator[Any]:
    """A real host as the nightly library opens it, or an in-process simulator for ``sim://``."""
    from .nightly import open_real_host

    if not entry.url.startswith("sim://"):
        with open_real_host(entry) as access:
            yield access
        return
    from .build import HostAccess
    from .cli_hosts import _scenario_of
    from .secrets import Secret
    from .sim.server import SimServer
    from .xapi.tls import TlsSettings

    server = SimServer(_scenario_of(entry.url))  # type: ignore[arg-type]
    server.start()
    try:
        yield HostAccess(
            server.url,
            server.username,
            Secret(server.password),
            TlsSettings(pin_sha256=server.fingerprint),
            entry.timeout,
            guest_ssh_port=server.host.guests.ssh_port,
        )
    finally:
        server.stop()
