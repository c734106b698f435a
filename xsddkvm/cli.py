"""The ``xsddkvm`` command: parses options, calls one library function, renders events.

The only module that knows both the client and the simulator (to serve ``xsddkvm sim`` and to
resolve ``sim://`` URLs), and the only one that exits.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click

from . import __version__
from .errors import Interrupted, XsddkvmError
from .events import EventSink
from .exit_codes import ExitCode
from .render import JsonRenderer, TerminalRenderer
from .secrets import redact


class Env:
    """What a command needs from its surroundings (injected so tests run the CLI in-process)."""

    def __init__(self, json_output: bool = False) -> None:
        self.json_output = json_output
        self._pending_signal: Optional[int] = None
        self._deferring = False

    def sink(self) -> EventSink:
        if self.json_output:
            return JsonRenderer(click.get_text_stream("stdout"))
        return TerminalRenderer(click.get_text_stream("stderr"))

    # -- signals: SIGINT/SIGTERM raise Interrupted, except while undoing ---------------------
    def quiet_libraries(self) -> None:
        """paramiko logs socket errors of closed connections; our errors say what matters."""
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False

    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._deferring:
            self._pending_signal = self._pending_signal or signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def signals_deferred(self) -> Iterator[None]:
        """Cleanup runs to the end even if a signal comes; then the signal takes effect."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        pending, self._pending_signal = self._pending_signal, None
        if pending:  # e.g. Ctrl-C while a successful build was removing its VM
            raise Interrupted(pending)


def report(env: Env, exc: BaseException) -> int:
    """Print an error as one paragraph (or a JSON event) and choose the exit code."""
    if isinstance(exc, (XsddkvmError, Interrupted)):
        code = int(exc.exit_code)
        payload = exc.to_dict()
        text = exc.paragraph()
    else:
        log = _write_traceback(exc)
        code = int(ExitCode.INTERNAL)
        text = (
            f"Internal error: {type(exc).__name__}. This is a bug in xsddkvm; the traceback is in "
            f"{log}. Please report it with that file."
        )
        payload = {"kind": "internal", "exit_code": code, "message": text, "hint": None}
    if env.json_output:
        click.echo(json.dumps({"event": "error", **payload}, default=str))
    else:
        click.echo(f"Error: {redact(text)}", err=True)
    return code


def _write_traceback(exc: BaseException) -> Path:
    from .build import data_dir

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = data_dir() / f"crash-{stamp}.log"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path.write_text(redact(text), encoding="utf-8")
    return path


def run_command(env: Env, fn: Callable[[], Optional[int]]) -> None:
    """Run a command body; translate every outcome into an exit status (the only sys.exit)."""
    env.install_signals()
    env.quiet_libraries()
    try:
        code = fn() or 0
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except KeyboardInterrupt as exc:
        code = report(env, exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT))
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into codes
        code = report(env, exc)
    sys.exit(code)


def _versions(ctx: click.Context, _param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    click.echo(f"xsddkvm {__version__}")
    for dist in ("XenAPI", "paramiko"):
        try:
            click.echo(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            click.echo(f"{dist} not installed")
    ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_versions,
    help="Show versions of xsddkvm, XenAPI and paramiko.",
)
def main() -> None:
    """Build XenServer supplemental packs in a throwaway DDK VM, in one command."""


def _password_prompt(text: str) -> str:
    return click.prompt(text, hide_input=True, err=True)


@main.command()
@click.argument("playbook", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", "host_url", help="Host URL; overrides host.url in the playbook.")
@click.option(
    "--keep-vm",
    type=click.Choice(["never", "on-failure", "always"]),
    default="never",
    show_default=True,
    help="Keep the DDK VM for inspection.",
)
@click.option("--json", "json_output", is_flag=True, help="Emit one JSON event per line on stdout.")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the pack, build.log and manifest.json.",
)
@click.option("--insecure", is_flag=True, help="Do not verify the host's TLS certificate (warns).")
@click.option("--fresh", is_flag=True, help="Import the image even if a golden template matches.")
def build(
    playbook: Path,
    host_url: Optional[str],
    keep_vm: str,
    json_output: bool,
    output_dir: Optional[Path],
    insecure: bool,
    fresh: bool,
) -> None:
    """Build the pack described by PLAYBOOK and fetch it, verified, to the output directory."""
    env = Env(json_output)

    def body() -> None:
        from .build import build as run_build
        from .cli_hosts import open_host
        from .config import apply_overrides, load_playbook

        pb = apply_overrides(
            load_playbook(playbook),
            host=host_url,
            insecure=insecure,
            output_dir=output_dir,
            fresh=fresh,
        )
        sink = env.sink()
        with open_host(pb, sink, _password_prompt) as (access, image):
            run_build(
                pb,
                access,
                emit=sink,
                image=image,
                keep_vm=keep_vm,
                signals_deferred=env.signals_deferred,
            )

    run_command(env, body)


@main.group()
def sim() -> None:
    """The built-in simulated XenServer host."""


@sim.command("serve")
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    help="HOST:PORT of the pool master (port 0: any free port).",
)
@click.option(
    "--scenario",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Scenario YAML (pool, credentials, faults).",
)
@click.option(
    "--password-env",
    default="XSDDKVM_SIM_PASSWORD",
    show_default=True,
    help="Variable holding the root password to accept (default: the scenario's).",
)
@click.option(
    "--tls/--no-tls",
    default=True,
    show_default=True,
    help="Serve HTTPS with a self-signed certificate.",
)
def sim_serve(listen: str, scenario: Optional[Path], password_env: str, tls: bool) -> None:
    """Run a simulated host until stopped (Ctrl-C), then remove its sandboxes."""
    env = Env()

    def body() -> None:
        from .cli_hosts import serve_simulator

        serve_simulator(listen, scenario, password_env, tls, lambda text: click.echo(text))

    run_command(env, body)


@sim.command("make-image")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (.xva or .iso).",
)
@click.option(
    "--form",
    type=click.Choice(["xva", "iso"]),
    help="Image form (default: from the file extension).",
)
@click.option("--product-version", default="8.2.1", show_default=True)
@click.option("--build-number", default="58", show_default=True)
@click.option("--kernel", default="4.19.0+1", show_default=True)
def sim_make_image(
    output: Path, form: Optional[str], product_version: str, build_number: str, kernel: str
) -> None:
    """Write a DDK-like image for the simulator: a current XVA, or an ISO laid out like Citrix's DDK."""
    env = Env()

    def body() -> None:
        from .sim.ddk_image import make_image

        chosen = form or ("iso" if output.suffix.lower() == ".iso" else "xva")
        make_image(
            output,
            form=chosen,
            product_version=product_version,
            build_number=build_number,
            kernel=kernel,
        )
        click.echo(str(output))

    run_command(env, body)


@main.group()
def host() -> None:
    """Facts about a host."""


@host.command("fingerprint")
@click.argument("url")
def host_fingerprint(url: str) -> None:
    """Print the SHA-256 fingerprint of URL's TLS certificate, to check and pin."""
    env = Env()

    def body() -> None:
        from .xapi.tls import fetch_fingerprint

        click.echo(fetch_fingerprint(url))

    run_command(env, body)


def _register_extensions() -> None:
    """Commands defined in their own modules (first-day and fleet commands)."""
    from . import cli_firstday, cli_fleet, cli_gc, cli_install, cli_sim

    cli_firstday.register(main)
    cli_fleet.register(main)
    cli_gc.register(main)
    cli_install.register(main)
    cli_sim.register(sim)


_register_extensions()
