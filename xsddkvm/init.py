"""``init``: a commented playbook for a new driver and, if its source tree is missing, a skeleton
in the shape of the DDK's driver example, so a partner's first build works as written.

The skeleton ships as package data under ``xsddkvm/templates/helloworld/`` (the example the shipped playbook builds); ``helloworld`` in file names
and contents stands for the driver name.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .config import key_of, public_fields
from .docgen import default_of, sections
from .errors import ConfigError

if TYPE_CHECKING:
    from importlib.abc import Traversable

PLACEHOLDER = "helloworld"  # the shipped example, renamed throughout
DRIVER_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
WIDTH = 100


@dataclasses.dataclass(frozen=True)
class InitOptions:
    """What ``xsddkvm init`` asks for; the defaults build as-is on the built-in simulator."""

    driver: str
    host_url: str = "sim://default"
    image: str = "sim:8.2.1"
    password_env: str = "XSDDKVM_PASSWORD"
    password_file: Optional[str] = None
    source_dir: str = "src"


def check_options(opts: InitOptions) -> None:
    """Refuse what would give a playbook that cannot build, naming the option to change."""
    if not DRIVER_NAME.match(opts.driver):
        raise ConfigError(
            f"Driver name {opts.driver!r} is not valid: it names the kernel module, the RPM and "
            "the pack label.",
            "Use lower-case letters, digits and underscores, starting with a letter (e.g. mydrv).",
        )
    if not opts.host_url.startswith(("https://", "http://", "sim://")):
        raise ConfigError(
            f"Host URL {opts.host_url!r} is not a host URL.",
            "Use https://<pool master> or sim://default.",
        )
    if opts.image.startswith("sim:") and not opts.host_url.startswith("sim://"):
        raise ConfigError(
            f"Image {opts.image!r} is a simulated DDK, which only a sim:// host can run.",
            "Pass --image with the path of the DDK ISO (or .xva) for your host's XenServer release.",
        )


def _settings(opts: InitOptions) -> dict[str, Any]:
    """``section.key`` -> value for every key the playbook sets; the rest stay commented."""
    values: dict[str, Any] = {
        "host.url": opts.host_url,
        "host.password_env": opts.password_env,
        "image.source": opts.image,
        "source.dir": opts.source_dir,
        "source.remote_dir": f"xsddkvm-build/{opts.driver}",
        "verify.modules": [opts.driver],
    }
    if opts.password_file:
        values["host.password_file"] = opts.password_file
    return values


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")


def render_playbook(opts: InitOptions) -> str:
    """The playbook text: every schema key with its documentation, chosen keys set."""
    values = _settings(opts)
    lines = [
        f"# Build the {opts.driver} driver pack in a throwaway DDK VM:",
        f"#   xsddkvm doctor {opts.driver}.yml && xsddkvm build {opts.driver}.yml",
        "# Every key is listed with its meaning; commented keys show their defaults.",
        "# Reference: docs/playbook.md; a real host: docs/real-host.md.",
    ]
    for name, doc, cls in sections():
        lines += ["", *_comment(doc, ""), f"{name}:"]
        for field in public_fields(cls):
            path = f"{name}.{key_of(field)}"
            lines += _comment(field.metadata["doc"], "  ")
            if path in values:
                lines.append(f"  {key_of(field)}: {json.dumps(values[path])}")
            else:
                lines.append(f"  # {key_of(field)}: {json.dumps(default_of(field))}")
    return "\n".join(lines) + "\n"


def _templates() -> Traversable:
    return resources.files("xsddkvm") / "templates" / "helloworld"


def skeleton(driver: str) -> dict[str, str]:
    """Relative path -> text of every skeleton file, the driver name filled in."""
    files: dict[str, str] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            name = prefix + child.name.replace(PLACEHOLDER, driver)
            if child.is_dir():
                walk(child, name + "/")
            else:
                files[name] = child.read_text(encoding="utf-8").replace(PLACEHOLDER, driver)

    walk(_templates(), "")
    return files


def plan(directory: Path, opts: InitOptions) -> dict[Path, str]:
    """Every file ``init`` would write; the skeleton only if the source directory is missing."""
    check_options(opts)
    files = {directory / f"{opts.driver}.yml": render_playbook(opts)}
    source = directory / opts.source_dir
    if not source.exists():
        files.update({source / rel: text for rel, text in skeleton(opts.driver).items()})
    return files


def init_project(directory: Path, opts: InitOptions) -> list[Path]:
    """Write the playbook (and the skeleton) under ``directory``; never overwrite a file."""
    files = plan(directory, opts)
    for path in files:
        if path.exists():
            raise ConfigError(
                f"{path} already exists; xsddkvm init never overwrites files.",
                "Choose another directory or driver name, or move the file away.",
            )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # "x": a file that appeared since the check above is still not overwritten
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            raise ConfigError(f"{path} appeared while xsddkvm init was writing.") from None
    return list(files)
