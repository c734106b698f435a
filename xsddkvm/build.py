"""``build``: one call from a playbook to a verified supplemental-pack ISO on local disk."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

from .config import Playbook
from .errors import ArtifactError, ConfigError, ImageError
from .events import EventSink, Result
from .golden import warm_stages
from .secrets import Secret
from .stages.build import RunBuild
from .stages.context import BuildContext, ImageChoice, _nothing
from .stages.fetch import FetchArtifacts, manifest
from .stages.pipeline import run_stages
from .stages.push import PushSource, check_source
from .stages.reach_guest import REACH_GUEST
from .stages.target import CheckTarget
from .stages.verify import VerifyPack
from .xapi.session import XapiSession
from .xapi.tls import TlsSettings
from .xapi.vm import BuildIdentity


@dataclasses.dataclass(frozen=True)
class HostAccess:
    """Everything needed to reach a host: URL, user, secret, TLS policy, guest SSH port."""

    url: str
    username: str
    password: Secret
    tls: TlsSettings
    timeout: float = 60.0
    guest_ssh_port: Optional[int] = None

    def session(self) -> XapiSession:
        return XapiSession(self.url, self.username, self.password, self.tls, self.timeout)


def data_dir() -> Path:
    """Where xsddkvm keeps its key pair, caches and state (XDG_DATA_HOME/xsddkvm)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    path = Path(base) / "xsddkvm"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def image_digest(path: Path) -> str:
    """SHA-256 of an image file, cached by (path, size, mtime) so warm builds do not rehash."""
    st = path.stat()
    cache = data_dir() / "digests.json"
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        tmp = cache.with_suffix(f".part-{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    return str(known[key])


def resolve_image(pb: Playbook) -> ImageChoice:
    """The playbook's image.source as a file to upload or a template to clone."""
    source = pb.image.source
    where = f"{pb.path}: image.source"
    if source.startswith("template:"):
        return ImageChoice("template", template=source[len("template:") :], label=source)
    if source.startswith("sim:"):
        raise ConfigError(
            f"{where}: {source!r} is a simulated DDK, which only a sim:// host can run.",
            "Use host.url: sim://default, or point image.source at a real DDK .iso or .xva.",
        )
    path = pb.resolve(source)
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "does not exist"
        raise ImageError(
            f"{where}: {path} {what}.",
            "Download the DDK ISO for your XenServer release and set image.source to its path.",
        )
    kind = "iso" if path.suffix.lower() == ".iso" else "xva"
    if kind == "xva":
        from .image.xva import read_xva_header

        read_xva_header(path)  # a file that is no XVA fails here, by name, before any upload
    return ImageChoice(kind, path=path, digest=image_digest(path), label=path.name)


def preflight(pb: Playbook, output_dir: Path) -> None:
    """Everything checkable locally, before anything is created on the host."""
    check_source(pb)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".xsddkvm-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArtifactError(
            f"Cannot write to the output directory {output_dir} ({exc.strerror or exc}).",
            "Choose another directory with -o DIR or artifacts.output_dir, or fix its permissions.",
        ) from None


STAGES = (*REACH_GUEST, CheckTarget, PushSource, RunBuild, VerifyPack, FetchArtifacts)


def build(
    pb: Playbook,
    access: HostAccess,
    *,
    emit: EventSink,
    image: Optional[ImageChoice] = None,
    keep_vm: str = "never",
    signals_deferred: Callable[[], ContextManager[None]] = _nothing,
) -> dict[str, Any]:
    """Run the whole lifecycle; returns the manifest. Raises an ``XsddkvmError`` on failure."""
    output_dir = Path(pb.artifacts.output_dir).expanduser().resolve()
    preflight(pb, output_dir)
    choice = image or resolve_image(pb)
    ctx = BuildContext(
        playbook=pb,
        xs=access.session(),
        identity=BuildIdentity.new(),
        emit=emit,
        image=choice,
        output_dir=output_dir,
        keep_vm=keep_vm,
        guest_ssh_port=access.guest_ssh_port,
        signals_deferred=signals_deferred,
    )
    run_stages([stage() for stage in warm_stages(STAGES)], ctx)
    result = manifest(ctx)
    emit(Result("build", True, {"output_dir": str(output_dir), "files": ctx.artifacts}))
    return result
