"""``nightly``: rebuild the pack for every host whose software, source or DDK changed.

Per host (a bounded thread pool): read its fingerprint, pick the DDK (``matching``), compare
with the last run's state, and either skip (no VM, nothing imported) or build into
``OUTPUT/<host>/<fingerprint digest>/``. One host failing never stops the others. The state
file is rewritten atomically, and only for hosts that succeeded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional
from urllib.parse import urlsplit

import yaml

from . import golden
from .build import HostAccess, build, image_digest
from .config import Playbook, _build, _f, load_playbook
from .errors import AuthError, ConfigError, XsddkvmError
from .events import Event, EventSink, Notice, Result
from .exit_codes import ExitCode
from .fingerprint import HostFingerprint, read_fingerprint
from .matching import CatalogEntry, choose_ddk, differences, entry_from_image, requirement_for
from .secrets import Secret
from .stages.context import ImageChoice
from .stages.fetch import write_json_atomic
from .stages.push import check_source, source_digest
from .xapi.session import XapiSession
from .xapi.tls import TlsSettings


@dataclasses.dataclass
class CatalogItem:
    image: str = _f("", "A DDK `.iso`/`.xva` (relative to this file) or `template:<uuid>`.")
    version: Optional[str] = _f(None, "Product version; default: read from the image.")
    build: Optional[str] = _f(None, "Build number (quote it); default: read from the image.")
    kernel: Optional[str] = _f(None, "The DDK's `uname -r`; default: a golden template's tag.")
    kernel_package: Optional[str] = _f(None, "The DDK's kernel-devel package, if known.")
    updates: Optional[list[str]] = _f(None, "Host updates this DDK was made for, if known.")


@dataclasses.dataclass
class NightlyHost:
    url: str = _f("", "XenAPI URL of the pool master.")
    username: str = _f("root", "XenAPI user name.")
    password_env: str = _f("XSDDKVM_PASSWORD", "Environment variable holding the password.")
    tls_fingerprint: Optional[str] = _f(None, "SHA-256 fingerprint of the certificate to pin.")
    insecure: bool = _f(False, "Skip TLS verification (warns).")
    ca_bundle: Optional[str] = _f(None, "CA bundle to verify the certificate with.")
    timeout: float = _f(60.0, "Seconds before one XenAPI call is abandoned.")


@dataclasses.dataclass
class NightlyConfig:
    playbook: str = _f("", "The build playbook (relative to this file); its host is ignored.")
    output_dir: str = _f("nightly-out", "Packs, report.json and junit.xml (relative to this file).")
    state_file: Optional[str] = _f(None, "The last run's state; default: OUTPUT/state.json.")
    concurrency: int = _f(4, "Hosts handled at once.")
    allow_mismatch: bool = _f(False, "Build in the closest DDK when none matches (warns).")
    catalog: list[CatalogItem] = _f([], "The DDKs to choose from.")
    hosts: list[NightlyHost] = _f([], "The hosts to build for.")
    path: Path = dataclasses.field(default=Path("nightly.yml"), metadata={"internal": True})

    def resolve(self, relative: str) -> Path:
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    @property
    def output(self) -> Path:
        return self.resolve(self.output_dir)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_file) if self.state_file else self.output / "state.json"


def load_config(path: Path) -> NightlyConfig:
    """Read and validate a nightly config; errors name ``file: key.path``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    try:
        cfg: NightlyConfig = _build(NightlyConfig, data, f"{path}:")
    except ConfigError as exc:
        raise ConfigError(exc.message, "See docs/nightly.md for every key.") from None
    cfg.path = path.resolve()
    _check(cfg)
    return cfg


def _check(cfg: NightlyConfig) -> None:
    where = f"{cfg.path}:"
    if not cfg.playbook:
        raise ConfigError(f"{where} playbook: missing.", "Name the build playbook to use.")
    if not 1 <= cfg.concurrency <= 64:
        raise ConfigError(f"{where} concurrency: expected 1 to 64, got {cfg.concurrency}.")
    if not cfg.catalog:
        raise ConfigError(f"{where} catalog: empty.", "List at least one DDK image.")
    if not cfg.hosts:
        raise ConfigError(f"{where} hosts: empty.", "List at least one host.")
    for i, item in enumerate(cfg.catalog):
        if not item.image:
            raise ConfigError(f"{where} catalog[{i}].image: missing.")
    seen: set[str] = set()
    for i, host in enumerate(cfg.hosts):
        if not re.match(r"^(https?|sim)://", host.url):
            raise ConfigError(
                f"{where} hosts[{i}].url: {host.url!r} is not a host URL.",
                "Use https://<pool master> (or sim://default to try it out).",
            )
        if host.url in seen:
            raise ConfigError(f"{where} hosts[{i}].url: {host.url} is listed twice.")
        seen.add(host.url)


HostOpener = Callable[[NightlyHost], ContextManager[HostAccess]]


@contextlib.contextmanager
def open_real_host(entry: NightlyHost) -> Iterator[HostAccess]:
    """Access to a real host, the password from the entry's environment variable."""
    password = os.environ.get(entry.password_env)
    if not password:
        raise AuthError(
            f"No password for {entry.username} on {entry.url}: ${entry.password_env} is not set.",
            f"Export {entry.password_env} in the job's environment (cron, systemd "
            "EnvironmentFile, CI secret variable).",
        )
    tls = TlsSettings(entry.tls_fingerprint, entry.ca_bundle, entry.insecure)
    yield HostAccess(entry.url, entry.username, Secret(password), tls, entry.timeout)


@dataclasses.dataclass
class HostOutcome:
    """What happened to one host: ``rebuilt``, ``unchanged`` or ``failed``."""

    url: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    fingerprint: Optional[dict[str, Any]] = None
    ddk: Optional[dict[str, Any]] = None
    output_dir: str = ""
    artifacts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: Optional[dict[str, Any]] = None
    message: str = ""  # the error paragraph when failed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NightlyRun:
    outcomes: list[HostOutcome]
    started: str
    seconds: float
    output_dir: Path

    @property
    def exit_code(self) -> ExitCode:
        statuses = {o.status for o in self.outcomes}
        if "failed" in statuses:
            return ExitCode.NIGHTLY_FAILED
        return ExitCode.NIGHTLY_REBUILT if "rebuilt" in statuses else ExitCode.OK


def host_dir_name(url: str) -> str:
    """A directory name for a host: its netloc, with anything odd replaced."""
    parts = urlsplit(url)
    return re.sub(r"[^A-Za-z0-9.:_-]", "_", parts.netloc or parts.path) or "host"


def load_state(path: Path) -> dict[str, dict[str, Any]]:
    """Per host URL: fingerprint, source and DDK digests and the artifacts of the last success."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data.get("hosts", {}))
    except (OSError, ValueError, AttributeError):
        return {}  # no or unreadable state only costs a rebuild of every host


def _pack_missing(artifacts: list[dict[str, Any]], out_dir: Path) -> bool:
    if not artifacts:
        return True
    for item in artifacts:
        path = Path(item.get("path", ""))
        if path.parent != out_dir or not path.is_file() or path.stat().st_size != item.get("size"):
            return True
    return False


def rebuild_reason(
    prev: Optional[dict[str, Any]], fp: HostFingerprint, source: str, ddk: str, out_dir: Path
) -> Optional[str]:
    """Why the host needs a new pack, or None when the last one still fits."""
    if prev is None:
        return "no previous build for this host"
    if prev.get("fingerprint") != fp.digest:
        old = HostFingerprint.from_dict({"url": fp.url, **prev.get("facts", {})})
        changed = [
            f"{name} {getattr(old, name) or '?'} -> {getattr(fp, name)}"
            for name in ("product_version", "build_number", "linux", "updates")
            if getattr(old, name) != getattr(fp, name)
        ]
        return "host changed: " + ("; ".join(changed) or "fingerprint differs")
    if prev.get("source") != source:
        return "driver source or playbook changed"
    if prev.get("ddk") != ddk:
        return "the chosen DDK changed"
    if _pack_missing(prev.get("artifacts", []), out_dir):
        return f"pack missing from {out_dir}"
    return None


class _Runner:
    """Shared, read-only inputs of one nightly run, and the per-host job."""

    def __init__(self, cfg: NightlyConfig, emit: EventSink, open_host: HostOpener) -> None:
        self.cfg = cfg
        self.open_host = open_host
        self._emit_lock = threading.Lock()
        self._emit = emit
        self.pb: Playbook = load_playbook(cfg.resolve(cfg.playbook))
        root, files = check_source(self.pb)
        playbook_bytes = self.pb.path.read_bytes()
        self.source = hashlib.sha256(
            source_digest(root, files).encode() + b"\0" + playbook_bytes
        ).hexdigest()
        self.files = [self._file_entry(i, item) for i, item in enumerate(cfg.catalog)]
        self.state = load_state(cfg.state_path)

    def emit(self, event: Event) -> None:
        with self._emit_lock:
            self._emit(event)

    def _file_entry(self, index: int, item: CatalogItem) -> Optional[CatalogEntry]:
        if item.image.startswith("template:"):
            return None
        path = self.cfg.resolve(item.image)
        if not path.is_file():
            raise ConfigError(f"{self.cfg.path}: catalog[{index}].image: {path} does not exist.")
        return entry_from_image(path, image_digest(path), **_declared(item))

    def catalog_on(self, xs: XapiSession) -> list[CatalogEntry]:
        """The file entries, plus the template entries that exist on this host."""
        found = []
        for item, entry in zip(self.cfg.catalog, self.files):
            if entry is not None:
                found.append(entry)
                continue
            vm = golden.lookup_vm(xs, item.image[len("template:") :])
            if vm is None:
                continue
            ref, rec = vm
            if golden.is_golden(rec):
                entry = golden.TemplateInfo.from_record(ref, rec).catalog_entry()
            else:
                entry = CatalogEntry(item.image, template_ref=ref)
            found.append(dataclasses.replace(entry, **_declared(item)))
        return found

    def run_host(self, entry: NightlyHost) -> HostOutcome:
        started = time.monotonic()
        outcome = HostOutcome(entry.url, "failed")
        try:
            with self.open_host(entry) as access:
                self._decide_and_build(entry, access, outcome)
        except XsddkvmError as exc:
            outcome.status, outcome.error, outcome.message = (
                "failed",
                exc.to_dict(),
                exc.paragraph(),
            )
        except Exception as exc:  # noqa: BLE001 - one host's bug must not stop the others
            text = f"Internal error: {type(exc).__name__}: {exc}. This is a bug in xsddkvm."
            outcome.status, outcome.message = "failed", text
            outcome.error = {"kind": "internal", "exit_code": int(ExitCode.INTERNAL)}
        outcome.seconds = round(time.monotonic() - started, 3)
        level = {"failed": "warning", "rebuilt": "success"}.get(outcome.status, "info")
        detail = outcome.message or outcome.reason
        self.emit(
            Notice(f"{entry.url}: {outcome.status}" + (f": {detail}" if detail else ""), level)
        )
        return outcome

    def _decide_and_build(self, entry: NightlyHost, access: HostAccess, out: HostOutcome) -> None:
        with access.session() as xs:
            fp = dataclasses.replace(read_fingerprint(xs), url=entry.url)
            catalog = self.catalog_on(xs)
        out.fingerprint = fp.to_dict()
        installer = self.pb.target.installer
        ddk = choose_ddk(catalog, fp, self.cfg.allow_mismatch, installer=installer)
        out.ddk = ddk.to_dict()
        wrong = differences(ddk, requirement_for(fp, installer))
        if wrong:
            self.emit(Notice(f"{entry.url}: building in a mismatched {ddk.describe()}.", "warning"))
        out_dir = self.cfg.output / host_dir_name(entry.url) / fp.digest
        out.output_dir = str(out_dir)
        ddk_key = ddk.digest or ddk.image
        prev = self.state.get(entry.url)
        reason = rebuild_reason(prev, fp, self.source, ddk_key, out_dir)
        if reason is None:
            out.status, out.reason = "unchanged", "up to date"
            out.artifacts = list(prev.get("artifacts", [])) if prev else []
            return
        out.reason = reason
        self.emit(Notice(f"{entry.url}: rebuilding ({reason})"))
        pb = copy.deepcopy(self.pb)
        pb.artifacts.output_dir = str(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "events.jsonl", "w", encoding="utf-8") as log:

            def to_log(event: Event) -> None:
                log.write(json.dumps(event.to_dict(), default=str) + "\n")

            manifest = build(pb, access, emit=to_log, image=_image_choice(ddk))
        out.status = "rebuilt"
        out.artifacts = [
            {k: f[k] for k in ("name", "path", "size", "sha256")} for f in manifest["files"]
        ]


def _declared(item: CatalogItem) -> dict[str, Any]:
    facts = {
        "product_version": item.version,
        "build_number": item.build,
        "kernel": item.kernel,
        "kernel_package": item.kernel_package,
        "updates": tuple(sorted(item.updates)) if item.updates is not None else None,
    }
    return {k: v for k, v in facts.items() if v is not None}


def _image_choice(ddk: CatalogEntry) -> ImageChoice:
    if ddk.template_ref:
        return ImageChoice(
            "template", template=ddk.template_ref, digest=ddk.digest, label=ddk.image
        )
    path = Path(ddk.image)
    kind = "iso" if path.suffix.lower() == ".iso" else "xva"
    return ImageChoice(kind, path=path, digest=ddk.digest, label=path.name)


def save_state(
    path: Path, old: dict[str, dict[str, Any]], outcomes: list[HostOutcome], source: str
) -> None:
    """Rewrite the state atomically: successful hosts updated, the others left as they were."""
    hosts = dict(old)
    for o in outcomes:
        if o.status == "failed" or o.fingerprint is None or o.ddk is None:
            continue
        facts = {k: v for k, v in o.fingerprint.items() if k not in ("url", "digest")}
        hosts[o.url] = {
            "fingerprint": o.fingerprint["digest"],
            "facts": facts,
            "source": source,
            "ddk": o.ddk["digest"] or o.ddk["image"],
            "output_dir": o.output_dir,
            "artifacts": o.artifacts,
            "built": hosts.get(o.url, {}).get("built") if o.status == "unchanged" else _now(),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"version": 1, "hosts": hosts})


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_nightly(
    cfg: NightlyConfig, emit: EventSink, open_host: HostOpener = open_real_host
) -> NightlyRun:
    """Handle every host of ``cfg``; write report.json, junit.xml and the state file."""
    from .nightly_report import write_junit, write_report

    started, clock = _now(), time.monotonic()
    runner = _Runner(cfg, emit, open_host)
    workers = min(cfg.concurrency, len(cfg.hosts))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="nightly") as pool:
        outcomes = list(pool.map(runner.run_host, cfg.hosts))
    run = NightlyRun(outcomes, started, round(time.monotonic() - clock, 3), cfg.output)
    cfg.output.mkdir(parents=True, exist_ok=True)
    write_report(run, cfg.output / "report.json")
    write_junit(run, cfg.output / "junit.xml")
    save_state(cfg.state_path, runner.state, outcomes, runner.source)
    emit(
        Result(
            "nightly", run.exit_code != ExitCode.NIGHTLY_FAILED, {"exit_code": int(run.exit_code)}
        )
    )
    return run
