"""``install``: put a built pack on hosts (ddk.md §4).

An update-format pack (XenServer 7.1+, ``update.xml`` in the ISO) is uploaded into a VDI over
XenAPI's ``PUT /import_raw_vdi``, introduced as a ``pool_update``, prechecked on every chosen host
and then applied; the upload VDI is always removed. A legacy pack (6.x, ``XS-REPOSITORY``) can
only be installed from dom0, so the exact dom0 commands are returned instead.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, Sequence
from urllib.parse import urlsplit

import requests

from .errors import ConfigError, HostAPIError, InstallError
from .events import EventSink, Notice, Progress
from .pack import read_iso_file
from .xapi import failures
from .xapi.imports import UploadBody, http_session
from .xapi.session import XapiSession
from .xapi.tasks import destroy_task, wait_for_task
from .xapi.vm import BuildIdentity, find_sr

if TYPE_CHECKING:
    from .build import HostAccess

ALREADY = ("UPDATE_ALREADY_APPLIED", "UPDATE_ALREADY_APPLIED_IN_POOL")
GUIDANCE = {
    "restartHost": "restart the host",
    "restartXAPI": "restart the toolstack (`xe-toolstack-restart`)",
    "restartPV": "restart the PV guests",
    "restartHVM": "restart the HVM guests",
}


@dataclasses.dataclass
class HostOutcome:
    """What happened on one host: ``applied`` or ``already-applied`` (with the host's words)."""

    host: str
    uuid: str
    status: str
    detail: str = ""
    code: str = ""


@dataclasses.dataclass
class InstallResult:
    iso: str
    kind: str  # "update" (pool_update) or "legacy" (dom0 commands only)
    name: str
    uuid: str = ""
    hosts: list[HostOutcome] = dataclasses.field(default_factory=list)
    guidance: list[str] = dataclasses.field(default_factory=list)  # after_apply_guidance
    commands: list[str] = dataclasses.field(default_factory=list)  # legacy: run these in dom0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class UpdateInfo:
    name: str
    uuid: str
    guidance: tuple[str, ...]


def install_pack(
    iso: Path, access: HostAccess, hosts: Optional[Sequence[str]], emit: EventSink
) -> InstallResult:
    """Install ``iso`` on ``hosts`` (names, UUIDs or addresses; None: every host of the pool)."""
    if not iso.is_file():
        raise ConfigError(f"{iso}: no such pack.", "Give the path of the .iso a build produced.")
    update_xml = read_iso_file(iso, "update.xml")
    if update_xml is None:
        return legacy_install(iso, access.url, emit)
    info = parse_update_xml(iso, update_xml)
    with access.session() as xs:
        targets = choose_hosts(xs, hosts)
        vdi = upload(xs, iso, emit, access.timeout)
        update, ours = None, False
        try:
            update, ours = introduce(xs, vdi, info)
            outcomes = precheck_all(xs, update, targets)
            for outcome in outcomes:
                if outcome.status == "pending":
                    with xs.doing(f"installing {info.name} on {outcome.host}"):
                        xs.api.pool_update.apply(update, targets[outcome.uuid])
                    outcome.status = "applied"
                    emit(Notice(f"Installed {info.name} on {outcome.host}.", "success"))
        except BaseException:
            remove_upload(xs, vdi, update if ours else None, failed=True)
            raise
        remove_upload(xs, vdi, update, failed=False)
    result = InstallResult(str(iso), "update", info.name, info.uuid, outcomes, list(info.guidance))
    if any(o.status == "applied" for o in outcomes) and info.guidance:
        todo = "; ".join(GUIDANCE.get(g, g) for g in info.guidance)
        emit(Notice(f"After installing {info.name}: {todo}.", "warning"))
    return result


def parse_update_xml(iso: Path, data: bytes) -> UpdateInfo:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InstallError(f"{iso.name}: update.xml is not XML ({exc}).", _REBUILD) from None
    name, uuid = root.get("name-label", ""), root.get("uuid", "")
    if root.tag != "update" or not name or not uuid:
        raise InstallError(f"{iso.name}: update.xml has no <update name-label uuid>.", _REBUILD)
    guidance = tuple(g for g in root.get("after-apply-guidance", "").split(",") if g)
    return UpdateInfo(name, uuid, guidance)


_REBUILD = "Rebuild the pack with the DDK's build-update, or check the file is the pack's ISO."


def legacy_install(iso: Path, url: str, emit: EventSink) -> InstallResult:
    """A 6.x pack: no XenAPI call installs it, so say exactly what to run in dom0 (ddk.md §4.1)."""
    repository = read_iso_file(iso, "XS-REPOSITORY")
    if repository is None:
        raise InstallError(
            f"{iso} is not a supplemental pack: it has neither update.xml nor XS-REPOSITORY.",
            "Give the .iso that `xsddkvm build` fetched (see manifest.json).",
        )
    try:
        name = ET.fromstring(repository).get("name", iso.stem)
    except ET.ParseError:
        name = iso.stem
    host = urlsplit(url).hostname or "<host>"
    remote = f"/tmp/{iso.name}"
    commands = [
        f"scp {iso} root@{host}:{remote}",
        f"ssh root@{host} 'mount -o loop,ro {remote} /mnt && cd /mnt && ./install; "
        f"cd / && umount /mnt'",
    ]
    emit(
        Notice(
            f"{iso.name} is a legacy supplemental pack (XS-REPOSITORY, no update.xml): XenAPI "
            "cannot install it, so nothing was installed. Run these commands instead:\n  "
            + "\n  ".join(commands),
            "warning",
        )
    )
    return InstallResult(str(iso), "legacy", name, commands=commands)


def choose_hosts(xs: XapiSession, wanted: Optional[Sequence[str]]) -> dict[str, str]:
    """host uuid -> ref for ``wanted`` (name label, UUID, address or hostname); all if None."""
    with xs.doing("listing the pool's hosts"):
        records = xs.api.host.get_all_records()
    found: dict[str, str] = {}
    for name in wanted or []:
        match = [
            (str(rec["uuid"]), str(ref))
            for ref, rec in records.items()
            if name in (rec["uuid"], rec["name_label"], rec["address"], rec["hostname"])
        ]
        if not match:
            known = ", ".join(sorted(str(r["name_label"]) for r in records.values()))
            raise ConfigError(
                f"--hosts: no host {name!r} in the pool at {xs.host_label}.",
                f"Use a name label, UUID or address; the pool has: {known}.",
            )
        found.update(match)
    return found or {str(rec["uuid"]): str(ref) for ref, rec in records.items()}


def upload(xs: XapiSession, iso: Path, emit: EventSink, timeout: float) -> str:
    """A new VDI on the default SR holding the ISO's bytes (``PUT /import_raw_vdi``)."""
    size = iso.stat().st_size
    sr = find_sr(xs, None)
    action = f"uploading {iso.name}"
    with xs.doing(action):
        vdi = str(
            xs.api.VDI.create(
                {
                    "name_label": iso.name,
                    "name_description": "pack upload by xsddkvm install",
                    "SR": sr,
                    "virtual_size": str(size),
                    "type": "user",
                    "sharable": False,
                    "read_only": False,
                    "other_config": BuildIdentity.new("install").tags(),
                    "xenstore_data": {},
                    "sm_config": {},
                    "tags": [],
                }
            )
        )
    try:
        with xs.doing(action):
            task = str(xs.api.task.create("xsddkvm install", f"upload of {iso.name}"))
        try:
            with open(iso, "rb") as f:
                _put(xs, vdi, task, f, size, emit, action, timeout)
            wait_for_task(xs, task, action=action, timeout=timeout)
        finally:
            destroy_task(xs, task)
    except BaseException:
        _quietly(xs, "removing the upload", lambda: xs.api.VDI.destroy(vdi))
        raise
    return vdi


class _File:
    """The ISO as a sized stream (so the upload has a Content-Length, never chunked)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._size = f, size

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def __len__(self) -> int:
        return self._size


def _put(
    xs: XapiSession,
    vdi: str,
    task: str,
    f: IO[bytes],
    size: int,
    emit: EventSink,
    action: str,
    timeout: float,
) -> None:
    url = xs.http_url("/import_raw_vdi", vdi=vdi, format="raw", task_id=task)
    body = UploadBody(_File(f, size), lambda done, total: emit(Progress("upload", done, total)))
    try:
        response = http_session(xs).put(
            url, data=body, cookies={"session_id": xs.handle}, timeout=(30, timeout)
        )
    except requests.exceptions.ConnectionError as exc:
        if body.sent == 0:
            raise failures.explain_transport(exc, url=xs.url, action=action) from None
        return  # the host closed early: its task says why
    except requests.exceptions.RequestException as exc:
        raise failures.explain_transport(exc, url=xs.url, action=action) from None
    if response.status_code == 401:
        raise failures.explain_failure(
            ["SESSION_INVALID", "(upload)"], host=xs.host_label, action=action
        )


def introduce(xs: XapiSession, vdi: str, info: UpdateInfo) -> tuple[str, bool]:
    """The pool_update for the upload, and whether this run introduced it.

    UPDATE_ALREADY_EXISTS means an earlier upload of the same pack: one applied nowhere is
    replaced; one applied somewhere is reused, so that precheck says where it is installed.
    """
    try:
        with xs.doing(f"introducing {info.name} as an update"):
            return str(xs.api.pool_update.introduce(vdi)), True
    except HostAPIError as exc:
        if exc.code != "UPDATE_ALREADY_EXISTS":
            raise
    with xs.doing(f"looking up the existing update {info.uuid}"):
        existing = str(xs.api.pool_update.get_by_uuid(info.uuid))
        applied = list(xs.api.pool_update.get_hosts(existing))
    if applied:
        return existing, False
    with xs.doing(f"replacing the earlier, unapplied upload of {info.name}"):
        xs.api.pool_update.destroy(existing)
        return str(xs.api.pool_update.introduce(vdi)), True


def precheck_all(xs: XapiSession, update: str, targets: dict[str, str]) -> list[HostOutcome]:
    """Precheck every host first, so that a failing check installs nothing anywhere."""
    with xs.doing("reading the hosts' names"):
        names = {uuid: str(xs.api.host.get_name_label(ref)) for uuid, ref in targets.items()}
    outcomes = []
    for uuid, ref in sorted(targets.items(), key=lambda item: names[item[0]]):
        outcome = HostOutcome(names[uuid], uuid, "pending")
        try:
            with xs.doing(f"checking {names[uuid]} before installing"):
                xs.api.pool_update.precheck(update, ref)
        except HostAPIError as exc:
            if exc.code not in ALREADY:
                raise
            outcome.status, outcome.detail, outcome.code = "already-applied", exc.message, exc.code
        outcomes.append(outcome)
    return outcomes


def remove_upload(xs: XapiSession, vdi: str, update: Optional[str], *, failed: bool) -> None:
    """Drop the upload: pool_clean the update (or destroy it if this failed run made it and it
    is applied nowhere), and destroy the VDI if nothing else did."""

    def clean() -> None:
        if update is not None:
            if failed and not xs.api.pool_update.get_hosts(update):
                xs.api.pool_update.destroy(update)
            elif xs.api.pool_update.get_vdi(update) == vdi:
                xs.api.pool_update.pool_clean(update)
        if vdi in xs.api.VDI.get_all():
            xs.api.VDI.destroy(vdi)

    if failed:
        _quietly(xs, "removing the upload", clean)
    else:
        with xs.doing("removing the uploaded pack"):
            clean()


def _quietly(xs: XapiSession, action: str, fn: Callable[[], Any]) -> None:
    """Cleanup after a failure: never hides the original error."""
    try:
        with xs.doing(action):
            fn()
    except Exception:  # noqa: BLE001 - the original failure is what the user must see
        pass
