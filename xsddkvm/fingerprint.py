"""What a host runs, in a few stable facts: version, build, dom0 kernel and applied updates.

Read over XenAPI from the pool master. A pack built in a DDK matches the host it was built for
only while these facts stay the same (ddk.md §5), so nightly rebuilds when the digest changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from .errors import HostAPIError
from .xapi.session import XapiSession

if TYPE_CHECKING:
    from .build import HostAccess


@dataclasses.dataclass(frozen=True)
class HostFingerprint:
    """The software facts of a pool master that decide which DDK a pack must be built in."""

    url: str
    product_version: str
    build_number: str
    linux: str  # dom0 `uname -r` (xenapi.md §8.1: the key to match a DDK)
    updates: list[str] = dataclasses.field(default_factory=list)  # sorted names
    product_brand: str = ""

    @property
    def digest(self) -> str:
        """A short hash of the software facts (not the URL): equal hosts share it."""
        facts = [self.product_version, self.build_number, self.linux, sorted(self.updates)]
        return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]

    @property
    def release(self) -> str:
        return f"{self.product_brand or 'XenServer'} {self.product_version}-{self.build_number}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "digest": self.digest}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostFingerprint:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def read_fingerprint(xs: XapiSession) -> HostFingerprint:
    """The pool master's fingerprint, over a logged-in session."""
    with xs.doing("reading the host's software version and updates"):
        pool = xs.api.pool.get_all()[0]
        master = xs.api.pool.get_master(pool)
        record = xs.api.host.get_record(master)
    version = {str(k): str(v) for k, v in record["software_version"].items()}
    names = _update_names(xs, list(record.get("updates", [])))
    names += _patch_names(xs, list(record.get("patches", [])))
    return HostFingerprint(
        url=xs.redirected_from or xs.url,
        product_version=version.get("product_version", ""),
        build_number=version.get("build_number", ""),
        linux=version.get("linux", ""),
        updates=sorted(set(names)),
        product_brand=version.get("product_brand", ""),
    )


def _update_names(xs: XapiSession, refs: list[str]) -> list[str]:
    # host.updates: Set pool_update applied on that host (Ely+; xenapi.md §8.2).
    if not refs:
        return []
    with xs.doing("reading the host's applied updates"):
        updates = xs.api.pool_update.get_all_records()
    return [str(updates[r]["name_label"]) for r in refs if r in updates]


def _patch_names(xs: XapiSession, refs: list[str]) -> list[str]:
    # host.patches: Set host_patch, the pre-7.1 hotfix record; deprecated Ely but still
    # filled on hosts upgraded from older releases (xenapi.md §8.2).
    if not refs:
        return []
    names = []
    for ref in refs:
        try:
            with xs.doing("reading the host's applied patches"):
                names.append(str(xs.api.host_patch.get_name_label(ref)))
        except HostAPIError as exc:
            if exc.code != "HANDLE_INVALID":  # removed between the two calls
                raise
    return names


def fetch_fingerprint(access: HostAccess) -> HostFingerprint:
    """Log in, read the fingerprint, log out."""
    with access.session() as xs:
        return read_fingerprint(xs)
