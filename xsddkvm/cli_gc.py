"""CLI command ``gc URL``: list, then remove, what interrupted builds left on a host.

Part of the CLI layer; ``cli.py`` calls ``register(main)``.
"""

from __future__ import annotations

import datetime
from typing import Any

import click

from .cli import Env, run_command
from .cli_fleet import _host_options, _host_playbook, _session


def register(main: click.Group) -> None:
    """Add ``gc`` to ``main``."""
    main.add_command(gc)


@click.command()
@click.argument("url")
@_host_options
@click.option("--dry-run", is_flag=True, help="List the leftovers; remove nothing.")
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=6.0,
    show_default=True,
    help="Hours after which another owner's (or machine's) build counts as dead.",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def gc(url: str, dry_run: bool, min_age: float, json_output: bool, **host: Any) -> None:
    """Remove VMs, disks, interfaces and tasks of xsddkvm builds that are no longer running.

    A build of this user on this machine is dead when its process is gone; other owners'
    builds when they are older than --min-age. Golden templates are never touched.
    """
    env = Env(json_output)

    def body() -> None:
        from .events import Result
        from .gc import collect, find_leftovers

        now = datetime.datetime.now(datetime.timezone.utc)
        sink = env.sink()
        with _session(env, _host_playbook(url, **host)) as xs:
            found = find_leftovers(xs, max_age_hours=min_age, now=now)
            removed = found if dry_run else collect(xs, found, sink)
        if json_output:
            objects = [item.to_dict() for item in removed]
            sink(Result("gc", True, {"dry_run": dry_run, "objects": objects}))
            return
        for item in removed:
            label = f"{item.name!r} " if item.name else ""
            click.echo(
                f"{item.cls:<4} {item.uuid} {label}build {item.build_id or '-'} "
                f"owner {item.owner or '-'}: {item.reason}"
            )
        verb = "Would remove" if dry_run else "Removed"
        click.echo(f"{verb} {len(removed)} object(s).")

    run_command(env, body)
