"""``xsddkvm init`` and ``xsddkvm doctor``: a partner's first day. ``cli.py`` calls ``register``.

Part of the CLI layer: parses options, calls one library function, renders the result.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Optional

import click

from .exit_codes import ExitCode

if TYPE_CHECKING:
    from .build import HostAccess
    from .config import Playbook
    from .stages.context import ImageChoice

# cli.py imports this module to call ``register``; importing cli here at call time, not at
# import time, keeps that cycle harmless wherever cli.py places its import.


def register(main: click.Group) -> None:
    """Add ``init`` and ``doctor`` to the ``xsddkvm`` command group."""
    main.add_command(init)
    main.add_command(doctor)


def _password_prompt(text: str) -> str:
    return str(click.prompt(text, hide_input=True, err=True))


def _driver_name(text: str) -> str:
    from .init import DRIVER_NAME

    if not DRIVER_NAME.match(text):
        raise click.BadParameter("use lower-case letters, digits and _, starting with a letter")
    return text


def _answer(
    ask: bool, given: Optional[str], prompt: str, default: Optional[str], **kwargs: Any
) -> Optional[str]:
    """The flag's value if given; else the answer to ``prompt`` on a terminal; else ``default``."""
    if given:
        return given
    return str(click.prompt(prompt, default=default, **kwargs)) if ask else default


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--driver-name", help="Kernel module, RPM and pack name ([a-z][a-z0-9_]*).")
@click.option("--host-url", help="Pool master URL (https://...), or sim://default.")
@click.option("--image", help="DDK image: .iso or .xva path, template:<uuid>, or sim:<version>.")
@click.option("--password-env", help="Variable holding the host password.")
@click.option("--password-file", help="File holding the host password (mode 0600).")
@click.option("--source-dir", default="src", show_default=True, help="Driver tree, in DIRECTORY.")
@click.option("--no-input", is_flag=True, help="Never prompt; take everything from the flags.")
def init(
    directory: Path,
    driver_name: Optional[str],
    host_url: Optional[str],
    image: Optional[str],
    password_env: Optional[str],
    password_file: Optional[str],
    source_dir: str,
    no_input: bool,
) -> None:
    """Write DIRECTORY/<driver>.yml and, if missing, a driver skeleton that builds as-is."""
    from .cli import Env, run_command

    env = Env()
    ask = not no_input and click.get_text_stream("stdin").isatty()

    def body() -> None:
        from .init import DRIVER_NAME, InitOptions, init_project

        defaults = InitOptions(driver="")
        guess = directory.resolve().name.lower().replace("-", "_")
        suggested = guess if ask and DRIVER_NAME.match(guess) else None
        name = _answer(ask, driver_name, "Driver name", suggested, value_proc=_driver_name)
        if not name:
            raise click.UsageError("--driver-name is required with --no-input or no terminal.")
        url = _answer(ask, host_url, "Host URL", defaults.host_url) or defaults.host_url
        simulated = url.startswith("sim://")
        chosen_image = _answer(
            ask, image, "DDK image (.iso or .xva path)", defaults.image if simulated else None
        )
        if not chosen_image:
            raise click.UsageError("--image (the DDK .iso or .xva) is required for a real host.")
        asks_password = ask and not simulated and not password_file
        variable = _answer(
            asks_password, password_env, "Variable holding the host password", defaults.password_env
        )
        opts = InitOptions(
            name, url, chosen_image, variable or defaults.password_env, password_file, source_dir
        )
        for path in init_project(directory, opts):
            click.echo(f"wrote {path}")
        playbook = directory / f"{name}.yml"
        click.echo(f"Next: xsddkvm doctor {playbook} && xsddkvm build {playbook}")

    run_command(env, body)


@click.command()
@click.argument("playbook", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", "host_url", help="Host URL; overrides host.url in the playbook.")
@click.option("--guest", help="IP[:PORT] of a running DDK to test SSH against.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object per check on stdout.")
def doctor(
    playbook: Optional[Path], host_url: Optional[str], guest: Optional[str], json_output: bool
) -> None:
    """Check this machine, PLAYBOOK, its host and its DDK image before a build."""
    from .cli import Env, run_command

    env = Env(json_output)

    def body() -> int:
        from .doctor import FAIL, run_checks
        from .errors import XsddkvmError

        pb, error = None, None
        if playbook is not None:
            from .config import apply_overrides, load_playbook

            try:
                pb = apply_overrides(load_playbook(playbook), host=host_url)
            except XsddkvmError as exc:
                error = exc

        def opener(pb: Playbook) -> ContextManager[tuple[HostAccess, Optional[ImageChoice]]]:
            from .cli_hosts import open_host  # after the package checks: it imports them all

            return open_host(pb, env.sink(), _password_prompt)

        checks = run_checks(pb, opener, guest=guest, load_error=error)
        for check in checks:
            if json_output:
                click.echo(json.dumps({"event": "check", **dataclasses.asdict(check)}))
                continue
            click.echo(check.line())
            if check.fix and check.status != "PASS":
                click.echo(f"     fix: {check.fix}")
        failed = any(c.status == FAIL for c in checks)
        return int(ExitCode.DOCTOR) if failed else 0

    run_command(env, body)
