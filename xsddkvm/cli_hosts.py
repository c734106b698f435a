"""CLI support: turn a playbook's host (real URL or ``sim://``) into ``HostAccess``.

Part of the CLI layer: the one place besides ``cli.py`` allowed to know the simulator.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from .build import HostAccess, data_dir, image_digest
from .config import Playbook, resolve_password
from .errors import ConfigError
from .events import EventSink, Notice
from .secrets import Secret
from .stages.context import ImageChoice
from .xapi.tls import TlsSettings


def tls_settings(pb: Playbook) -> TlsSettings:
    return TlsSettings(
        pin_sha256=pb.host.tls_fingerprint, ca_bundle=pb.host.ca_bundle, insecure=pb.host.insecure
    )


def simulated_image(source: str) -> Path:
    """``sim:<version>[-<build>[-<kernel>]]`` -> a generated DDK XVA, cached in the data dir."""
    from .sim.ddk_image import make_image

    spec = source[len("sim:") :] or "8.2.1"
    version, _, rest = spec.partition("-")
    build, _, kernel = rest.partition("-")
    build, kernel = build or "58", kernel or "4.19.0+1"
    # Keyed by the simulated guest's files too, so an upgraded xsddkvm never reuses a stale image.
    path = data_dir() / "sim-images" / f"ddk-{version}-{build}-{kernel}-{guest_files_digest()}.xva"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".part-{os.getpid()}")
        make_image(tmp, form="xva", product_version=version, build_number=build, kernel=kernel)
        os.replace(tmp, path)
    return path


def guest_files_digest() -> str:
    """A short digest of the simulated DDK's file tree (the source of every simulated image)."""
    from .sim.ddk_image import FILES

    digest = hashlib.sha256()
    for path in sorted(p for p in FILES.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(FILES)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _scenario_of(url: str) -> object:
    from .sim.scenario import default_scenario, load_scenario

    parts = urlsplit(url)
    if parts.netloc in ("", "default") and not parts.path.strip("/"):
        return default_scenario()
    if parts.netloc in ("", "default") and parts.path:
        return load_scenario(Path(parts.path))
    raise ConfigError(
        f"host.url: {url!r}: a simulator URL is sim://default or sim:///path/to/scenario.yml.",
    )


@contextlib.contextmanager
def open_host(
    pb: Playbook, sink: EventSink, prompt: Callable[[str], str]
) -> Iterator[tuple[HostAccess, Optional[ImageChoice]]]:
    """Access to the playbook's host; a ``sim://`` host runs in-process for the command's length."""
    image: Optional[ImageChoice] = None
    if pb.image.source.startswith("sim:"):
        if not pb.host.url.startswith("sim://"):
            raise ConfigError(
                f"{pb.path}: image.source: {pb.image.source!r} is a simulated DDK, which only a "
                "sim:// host can run.",
                "Point image.source at a real DDK .iso or .xva, or use host.url: sim://default.",
            )
        path = simulated_image(pb.image.source)
        image = ImageChoice("xva", path=path, digest=image_digest(path), label=pb.image.source)
    if not pb.host.url.startswith("sim://"):
        if pb.host.insecure:
            sink(
                Notice(
                    "TLS verification is off (--insecure): anyone on the network path can impersonate the host.",
                    "warning",
                )
            )
        password = resolve_password(pb, prompt)
        yield (
            HostAccess(pb.host.url, pb.host.username, password, tls_settings(pb), pb.host.timeout),
            image,
        )
        return
    from .sim.server import SimServer

    server = SimServer(_scenario_of(pb.host.url))  # type: ignore[arg-type]
    server.start()
    try:
        sink(Notice(f"Simulated host {server.url} (certificate {server.fingerprint})"))
        access = HostAccess(
            server.url,
            server.username,
            Secret(server.password),
            TlsSettings(pin_sha256=server.fingerprint),
            pb.host.timeout,
            guest_ssh_port=server.host.guests.ssh_port,
        )
        yield access, image
    finally:
        server.stop()


def serve_simulator(
    listen: str,
    scenario_path: Optional[Path],
    password_env: str,
    tls: bool,
    echo: Callable[[str], None],
) -> None:
    from .sim.scenario import default_scenario, load_scenario
    from .sim.server import SimServer

    scenario = load_scenario(scenario_path) if scenario_path else default_scenario()
    password = os.environ.get(password_env)
    if password:
        scenario.credentials.password = password
    _address, _, port = listen.rpartition(":")
    server = SimServer(scenario, tls=tls, port=int(port or 0))
    server.start()
    try:
        echo(f"url: {server.url}")
        if tls:
            echo(f"fingerprint: {server.fingerprint}")
        echo(f"guest ssh port: {server.host.guests.ssh_port}")
        echo("Serving until Ctrl-C.")
        while True:
            time.sleep(3600)
    finally:
        server.stop()
