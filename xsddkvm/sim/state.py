"""The simulator's object database: tables of records, reverse references and an event log.

Thread-safe: every public method takes ``lock``; ``changed`` is notified on each write so that
``event.from`` and waiters can block on it.
"""

from __future__ import annotations

import copy
import threading
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from . import records
from .errors import handle_invalid, uuid_invalid

NULL_REF = "OpaqueRef:NULL"

# (child class, field in child) -> set field in the parent that lists the children.
# Mirrors xapi's one-to-many relations (ocaml/idl/datamodel.ml "relations").
RELATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("VBD", "VM"): ("VM", "VBDs"),
    ("VBD", "VDI"): ("VDI", "VBDs"),
    ("VIF", "VM"): ("VM", "VIFs"),
    ("VIF", "network"): ("network", "VIFs"),
    ("VDI", "SR"): ("SR", "VDIs"),
    ("PBD", "SR"): ("SR", "PBDs"),
    ("PBD", "host"): ("host", "PBDs"),
    ("PIF", "network"): ("network", "PIFs"),
    ("PIF", "host"): ("host", "PIFs"),
    ("console", "VM"): ("VM", "consoles"),
}


def new_ref() -> str:
    return f"OpaqueRef:{uuidlib.uuid4()}"


class SimState:
    """All objects of one simulated pool, keyed by class name then OpaqueRef."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.generation = 0
        # (generation, class, operation, ref, snapshot or None)
        self.log: list[tuple[int, str, str, str, Optional[dict[str, Any]]]] = []

    # -- writes -----------------------------------------------------------------------------
    def create(self, cls: str, **fields: Any) -> str:
        """Insert a record (defaults from ``records``), link it to its parents, return its ref."""
        with self.lock:
            ref = fields.pop("ref", None) or new_ref()
            record = records.defaults(cls)
            record.setdefault("uuid", str(uuidlib.uuid4()))
            record.update(fields)
            if not record.get("uuid"):
                record["uuid"] = str(uuidlib.uuid4())
            self.tables.setdefault(cls, {})[ref] = record
            for (child, field), (parent, listing) in RELATIONS.items():
                if child == cls and record.get(field, NULL_REF) in self.tables.get(parent, {}):
                    self.tables[parent][record[field]][listing].append(ref)
            self._log(cls, "add", ref)
            return ref

    def update(self, cls: str, ref: str, **fields: Any) -> None:
        with self.lock:
            record = self.get(cls, ref)
            record.update(fields)
            self._log(cls, "mod", ref)

    def destroy(self, cls: str, ref: str) -> None:
        with self.lock:
            record = self.get(cls, ref)
            for (child, field), (parent, listing) in RELATIONS.items():
                owner = self.tables.get(parent, {}).get(record.get(field, NULL_REF))
                if child == cls and owner is not None and ref in owner[listing]:
                    owner[listing].remove(ref)
            del self.tables[cls][ref]
            self._log(cls, "del", ref)

    def touch(self, cls: str, ref: str) -> None:
        """Record a modification made in place on the live record."""
        with self.lock:
            self._log(cls, "mod", ref)

    def _log(self, cls: str, operation: str, ref: str) -> None:
        self.generation += 1
        snapshot = None
        if operation != "del":
            snapshot = copy.deepcopy(self.tables[cls][ref])
        self.log.append((self.generation, cls, operation, ref, snapshot))
        if len(self.log) > 20000:
            del self.log[:10000]
        self.changed.notify_all()

    # -- reads ------------------------------------------------------------------------------
    def get(self, cls: str, ref: str) -> dict[str, Any]:
        """The live record (callers that mutate it must call ``touch``)."""
        with self.lock:
            try:
                return self.tables[cls][ref]
            except KeyError:
                raise handle_invalid(cls, ref) from None

    def exists(self, cls: str, ref: str) -> bool:
        with self.lock:
            return ref in self.tables.get(cls, {})

    def all(self, cls: str) -> dict[str, dict[str, Any]]:
        """A deep copy of every record of ``cls``."""
        with self.lock:
            return copy.deepcopy(self.tables.get(cls, {}))

    def refs(self, cls: str) -> list[str]:
        with self.lock:
            return list(self.tables.get(cls, {}))

    def by_uuid(self, cls: str, uuid: str) -> str:
        with self.lock:
            for ref, record in self.tables.get(cls, {}).items():
                if record.get("uuid") == uuid:
                    return ref
            raise uuid_invalid(cls, uuid)

    def find(self, cls: str, predicate: Callable[[dict[str, Any]], bool]) -> list[str]:
        with self.lock:
            return [r for r, rec in self.tables.get(cls, {}).items() if predicate(rec)]

    def first(self, cls: str, predicate: Callable[[dict[str, Any]], bool]) -> Optional[str]:
        found = self.find(cls, predicate)
        return found[0] if found else None

    def classes(self) -> Iterable[str]:
        with self.lock:
            return list(self.tables)
