"""CLI commands that drive a running simulator: ``sim inspect URL`` and ``sim hotfix URL``.

They call the simulator-only ``sim.*`` messages through the official XenAPI SDK, logged in as
any client would. Part of the CLI layer (it reads the default scenario's password); ``cli.py``
calls ``register(sim)``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable, Optional

import click

from .cli import Env, run_command
from .errors import HostAPIError
from .events import Notice
from .secrets import Secret

if TYPE_CHECKING:
    from .xapi.session import XapiSession

INSPECT_ORDER = ("VM", "VDI", "VBD", "VIF", "console", "task", "session", "pool_update")


def register(sim: click.Group) -> None:
    """Add ``inspect`` and ``hotfix`` to the ``xsddkvm sim`` group."""
    sim.add_command(sim_inspect)
    sim.add_command(sim_hotfix)


def _connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--username", default="root", show_default=True, help="XenAPI user."),
        click.option(
            "--password-env",
            default="XSDDKVM_SIM_PASSWORD",
            show_default=True,
            help="Variable holding the password (unset: the default scenario's).",
        ),
        click.option("--fingerprint", help="SHA-256 fingerprint of the certificate to pin."),
        click.option("--insecure", is_flag=True, help="Do not verify the TLS certificate (warns)."),
        click.option("--timeout", default=30.0, show_default=True, help="Seconds per call."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _session(
    env: Env,
    url: str,
    username: str,
    password_env: str,
    fingerprint: Optional[str],
    insecure: bool,
    timeout: float,
) -> XapiSession:
    from .sim.scenario import default_scenario
    from .xapi.session import XapiSession
    from .xapi.tls import TlsSettings

    if insecure:
        env.sink()(Notice("TLS verification is off (--insecure).", "warning"))
    password = os.environ.get(password_env) or default_scenario().credentials.password
    tls = TlsSettings(pin_sha256=fingerprint, insecure=insecure)
    return XapiSession(url, username, Secret(password), tls, timeout)


def _call(xs: XapiSession, action: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn()``, a call on ``xs.api``; a host without ``sim.*`` is not a simulator."""
    try:
        with xs.doing(action):
            return fn()
    except HostAPIError as exc:
        if exc.code != "MESSAGE_METHOD_UNKNOWN":
            raise
        raise HostAPIError(
            f"{xs.url} does not serve {exc.params[0] if exc.params else 'sim.*'}: it is not an "
            "xsddkvm simulator.",
            "Point the command at the url: printed by `xsddkvm sim serve`.",
            code=exc.code,
            params=exc.params,
        ) from None


@click.command("inspect")
@click.argument("url")
@_connection_options
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def sim_inspect(url: str, json_output: bool, **conn: Any) -> None:
    """List the VMs, VDIs, VBDs, VIFs, tasks, sessions and updates a client left on URL.

    The seeded objects and this command's own session are not listed.
    """
    env = Env(json_output)

    def body() -> None:
        with _session(env, url, **conn) as xs:
            found = _call(xs, "inspecting the simulator", lambda: xs.api.sim.inspect())
        if json_output:
            click.echo(json.dumps(found, indent=2, sort_keys=True))
            return
        click.echo(_inspect_text(found))

    run_command(env, body)


def _inspect_text(found: dict[str, list[dict[str, Any]]]) -> str:
    classes = [c for c in INSPECT_ORDER if c in found] + sorted(set(found) - set(INSPECT_ORDER))
    lines = []
    for cls in classes:
        for obj in found[cls]:
            label = obj.get("name_label") or obj.get("device") or obj.get("status") or ""
            lines.append(f"{cls} {obj.get('uuid', '')} {label}".rstrip() + f" ({obj['ref']})")
    return "\n".join(lines) if lines else "Nothing left: no VM, VDI, VBD, VIF, task or session."


@click.command("hotfix")
@click.argument("url")
@_connection_options
@click.option("--build-number", help="New build number of the host.")
@click.option("--linux", help="New dom0 kernel (software_version linux).")
@click.option("--update", "update_name", help="Name of the pool_update to mark applied.")
def sim_hotfix(
    url: str,
    build_number: Optional[str],
    linux: Optional[str],
    update_name: Optional[str],
    **conn: Any,
) -> None:
    """Change the running simulator at URL as a hotfix would: build, kernel and an update."""
    env = Env()

    def body() -> None:
        changes = {"build_number": build_number, "linux": linux, "update": update_name}
        given = {key: value for key, value in changes.items() if value}
        with _session(env, url, **conn) as xs:
            update = _call(xs, "applying the hotfix", lambda: xs.api.sim.hotfix(given))
            name = _call(
                xs, "reading the update", lambda: xs.api.pool_update.get_name_label(update)
            )
        click.echo(f"Applied {name}.")

    run_command(env, body)
