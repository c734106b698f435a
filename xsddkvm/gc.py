"""Garbage collection: find what killed builds left on a host, and remove it.

Every object a build creates carries ``other_config`` tags (``xapi/vm.py`` ``BuildIdentity``):
build id, owner ``user@hostname``, pid and creation time. A build is still running when its
owner is this user on this machine and its pid is alive, or, for other owners (whose pids we
cannot see), when it is younger than ``max_age_hours``. Everything else tagged by a build is a
leftover. Golden templates and their disks carry no build id and are never collected; a clone
of a golden template does carry one, so it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import socket
from typing import Any, Callable, Optional

from .errors import CleanupError, HostAPIError
from .events import EventSink, ObjectRemoved
from .golden import is_golden
from .xapi.session import XapiSession
from .xapi.vm import TAG

BUILD_ID, OWNER, PID, CREATED = (f"{TAG}.{k}" for k in ("build_id", "owner", "pid", "created"))
TASK_PREFIX = "xsddkvm"  # name_label of every task xsddkvm creates
ORDER = ("task", "VM", "VIF", "VDI")  # tasks first (they may hold a VM), disks after their VM


@dataclasses.dataclass(frozen=True)
class Leftover:
    """One object to remove, with who made it and why it counts as left over."""

    cls: str
    ref: str
    uuid: str
    name: str
    build_id: str
    owner: str
    pid: Optional[int]
    created: str
    reason: str
    vm: str = ""  # the leftover VM a disk belongs to (removed with it)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def local_owner() -> str:
    """``user@hostname``, as ``BuildIdentity`` writes it."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def pid_alive(_owner: str, pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (called for local owners only)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _parse_time(text: str) -> Optional[datetime.datetime]:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%SZ"):  # ours, and xapi's DateTime
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


class _Judge:
    """Decides, per set of tags, whether the build that made an object is gone."""

    def __init__(
        self,
        max_age_hours: float,
        now: datetime.datetime,
        alive: Callable[[str, int], bool],
        me: str,
    ) -> None:
        self.max_age = datetime.timedelta(hours=max_age_hours)
        self.now, self.alive, self.me = now, alive, me

    def gone(self, owner: str, pid: Optional[int], created: str) -> Optional[str]:
        """Why the build is over, or None while it may still be running."""
        if owner == self.me and pid is not None:
            return None if self.alive(owner, pid) else f"process {pid} on this machine has exited"
        born = _parse_time(created)
        if born is None or self.now - born < self.max_age:  # unknown age: never guess
            return None
        hours = (self.now - born).total_seconds() / 3600
        limit = self.max_age.total_seconds() / 3600
        return f"created {hours:.1f} h ago, by another owner (older than {limit:g} h)"

    def leftover(self, cls: str, ref: str, rec: dict[str, Any], vm: str = "") -> Optional[Leftover]:
        tags = rec.get("other_config") or {}
        build_id = str(tags.get(BUILD_ID, ""))
        if not build_id:
            return None
        owner, created = str(tags.get(OWNER, "")), str(tags.get(CREATED, ""))
        pid_text = str(tags.get(PID, ""))
        pid = int(pid_text) if pid_text.isdigit() else None
        reason = self.gone(owner, pid, created)
        if reason is None:
            return None
        name = str(rec.get("name_label", ""))
        uuid = str(rec.get("uuid", ""))
        return Leftover(cls, ref, uuid, name, build_id, owner, pid, created, reason, vm)


def find_leftovers(
    xs: XapiSession,
    *,
    max_age_hours: float,
    now: datetime.datetime,
    alive: Callable[[str, int], bool] = pid_alive,
    me: Optional[str] = None,
) -> list[Leftover]:
    """Every object on the pool made by a build that is no longer running, in removal order."""
    judge = _Judge(max_age_hours, now, alive, me or local_owner())
    with xs.doing("listing VMs, disks, interfaces and tasks for garbage collection"):
        vms = xs.api.VM.get_all_records()
        vdis = xs.api.VDI.get_all_records()
        vbds = xs.api.VBD.get_all_records()
        vifs = xs.api.VIF.get_all_records()
        tasks = xs.api.task.get_all_records()
    found: list[Leftover] = []
    dead_vms: set[str] = set()
    for ref, rec in vms.items():
        if rec.get("is_control_domain") or is_golden(rec):
            continue
        item = judge.leftover("VM", ref, rec)
        if item is not None:
            found.append(item)
            dead_vms.add(ref)
    for ref, rec in vdis.items():
        users = {vbds[v]["VM"] for v in rec.get("VBDs", []) if v in vbds}
        if any(u in vms and is_golden(vms[u]) for u in users) or users - dead_vms:
            continue  # a golden template's disk, or one a live VM still uses
        item = judge.leftover("VDI", ref, rec, vm=next(iter(users), ""))
        if item is not None:
            found.append(item)
    for ref, rec in vifs.items():
        if rec.get("VM") in vms:
            continue  # removed with its VM, or belongs to a live one
        item = judge.leftover("VIF", ref, rec)
        if item is not None:
            found.append(item)
    for ref, rec in tasks.items():
        item = _task_leftover(judge, ref, rec)
        if item is not None:
            found.append(item)
    return sorted(found, key=lambda item: ORDER.index(item.cls))


def _task_leftover(judge: _Judge, ref: str, rec: dict[str, Any]) -> Optional[Leftover]:
    """A pending task xsddkvm named, old enough: tasks carry no build tags, so age decides."""
    if rec.get("status") != "pending" or not str(rec.get("name_label", "")).startswith(TASK_PREFIX):
        return None
    created = str(rec.get("created", ""))
    reason = judge.gone("", None, created)
    if reason is None:
        return None
    return Leftover(
        "task", ref, str(rec.get("uuid", "")), str(rec["name_label"]), "", "", None, created, reason
    )


def collect(xs: XapiSession, leftovers: list[Leftover], emit: EventSink) -> list[Leftover]:
    """Remove ``leftovers`` (as ``find_leftovers`` ordered them); returns what was removed.

    One failure does not stop the rest; if any remain, ``CleanupError`` lists them.
    """
    removed: list[Leftover] = []
    problems: list[str] = []
    for item in leftovers:
        try:
            _remove(xs, item)
        except HostAPIError as exc:
            if exc.code == "HANDLE_INVALID":  # already gone (a VIF goes with its VM)
                continue
            problems.append(f"{item.cls} {item.uuid or item.ref}: {exc.message}")
            continue
        removed.append(item)
        emit(ObjectRemoved(item.cls, item.ref))
    if problems:
        raise CleanupError(
            f"Removed {len(removed)} of {len(leftovers)} leftover objects; these remain: "
            + "; ".join(problems)
            + ".",
            "Run `xsddkvm gc URL` again; if an object still stays, remove it with `xe` on the host.",
        )
    return removed


def _remove(xs: XapiSession, item: Leftover) -> None:
    api = xs.api
    with xs.doing(f"removing the leftover {item.cls} {item.uuid or item.ref}"):
        if item.cls == "task":
            api.task.cancel(item.ref)
            api.task.destroy(item.ref)
        elif item.cls == "VM":
            if api.VM.get_power_state(item.ref) != "Halted":
                api.VM.hard_shutdown(item.ref)
            api.VM.destroy(item.ref)
        elif item.cls == "VIF":
            api.VIF.destroy(item.ref)
        elif item.cls == "VDI":
            api.VDI.destroy(item.ref)
