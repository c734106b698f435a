"""The DDK catalog and the rule that picks the DDK a pack must be built in (ddk.md §5).

Rule: the DDK's build must be the host's build and the DDK's kernel (``uname -r`` in the DDK)
the host's ``software_version["linux"]``. Since 6.5 ``uname -r`` stays the same across
updates, so when both sides declare their applied updates those must be the same too. For an
installer target (a driver disk for a fresh install) the DDK must be the release's own DDK with
the release's base kernel, whatever hotfixes the build host has.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import MismatchError
from .fingerprint import HostFingerprint

# The VM name label of every DDK image: "XenServer DDK 8.2.1-58" (architecture.md, ddk.md §1.2).
DDK_LABEL = re.compile(r"DDK\s+(?P<version>[^\s-]+)-(?P<build>\S+)")

# Dom0 `uname -r` of each release as installed, before any hotfix (ddk.md §5 table).
BASE_KERNELS = {
    "6.1": "2.6.32.43-0.4.1.xs1.6.10.734.170748xen",
    "6.2": "2.6.32.43-0.4.1.xs1.8.0.835.170778xen",
    "6.5": "3.10.0+2",
    "8.0": "4.19.0+1",
    "8.1": "4.19.0+1",
    "8.2": "4.19.0+1",
}

_WEIGHTS = {"version": 8, "build": 4, "kernel": 2, "updates": 1}


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One DDK that can build packs: an image file, or a template on a host."""

    image: str  # a file path, or "template:<uuid>"
    product_version: str = ""
    build_number: str = ""
    kernel: str = ""  # the DDK's `uname -r`; "" when nobody said
    kernel_package: str = ""
    updates: Optional[tuple[str, ...]] = None  # host updates it was made for; None: unknown
    digest: str = ""  # sha256 of the image file
    template_ref: str = ""  # OpaqueRef of the template on the host being matched

    def describe(self) -> str:
        text = f"DDK {self.product_version or '?'}-{self.build_number or '?'}"
        return text + (f", kernel {self.kernel}" if self.kernel else ", kernel unknown")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["updates"] = list(self.updates) if self.updates is not None else None
        return data


@dataclasses.dataclass(frozen=True)
class Requirement:
    """The DDK a target needs; empty fields are not checked."""

    product_version: str
    build_number: str = ""
    kernel: str = ""
    updates: Optional[tuple[str, ...]] = None
    what: str = ""  # "host https://xs1 (XenServer 8.2.1-58)" or "installer 7.1.0"

    def describe(self) -> str:
        text = f"DDK {self.product_version}" + (
            f"-{self.build_number}" if self.build_number else ""
        )
        if self.kernel:
            text += f" with kernel {self.kernel}"
        if self.updates:
            text += f" and updates {', '.join(self.updates)}"
        return text


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def parse_ddk_label(label: str) -> tuple[str, str]:
    """``(product_version, build_number)`` from ``XenServer DDK 8.2.1-58``; empty if not a DDK."""
    found = DDK_LABEL.search(label)
    return (found.group("version"), found.group("build")) if found else ("", "")


def entry_from_image(path: Path, digest: str = "", **declared: Any) -> CatalogEntry:
    """A catalog entry for an image file: version and build from its header, the kernel the
    release's base kernel; whatever is declared wins."""
    if path.suffix.lower() == ".iso":
        from .image.ddk_iso import open_ddk_iso

        with open_ddk_iso(path) as iso:
            version, build = iso.product_version, iso.build_number
    else:
        from .image.xva import read_xva_header

        header = read_xva_header(path)
        version, build = parse_ddk_label(header.name_label)
        if not version:  # an XVA exported by hand: fall back to the exporting host's version
            version = header.version.get("product_version", "")
            build = header.version.get("build_number", "")
    # A DDK ships its release's kernel unless the catalog says it follows a hotfix.
    kernel = BASE_KERNELS.get(_major_minor(version), "")
    entry = CatalogEntry(str(path), version, build, kernel, digest=digest)
    if declared.get("updates") is not None:
        declared["updates"] = tuple(sorted(declared["updates"]))
    return dataclasses.replace(entry, **{k: v for k, v in declared.items() if v is not None})


def requirement_for(
    fp: HostFingerprint, installer: Optional[str] = None, installer_kernel: Optional[str] = None
) -> Requirement:
    """What DDK a pack for the host (or for the installer release) must be built in."""
    if installer:
        base = installer_kernel or BASE_KERNELS.get(_major_minor(installer), "")
        return Requirement(installer, kernel=base, what=f"installer {installer}")
    return Requirement(
        fp.product_version,
        fp.build_number,
        fp.linux,
        tuple(sorted(fp.updates)),
        what=f"host {fp.url} ({fp.release}, kernel {fp.linux})",
    )


def differences(entry: CatalogEntry, req: Requirement) -> list[tuple[str, str]]:
    """``(field, explanation)`` for every way ``entry`` fails ``req``; empty means it matches.

    A fact the entry does not know is not held against it, except version and build.
    """
    found = []
    if entry.product_version != req.product_version:
        found.append(
            (
                "version",
                f"version is {entry.product_version or 'unknown'}, not {req.product_version}",
            )
        )
    if req.build_number and entry.build_number != req.build_number:
        found.append(
            ("build", f"build is {entry.build_number or 'unknown'}, not {req.build_number}")
        )
    if req.kernel and entry.kernel and entry.kernel != req.kernel:
        found.append(("kernel", f"kernel is {entry.kernel}, not {req.kernel}"))
    if req.updates is not None and entry.updates is not None:
        if set(entry.updates) != set(req.updates):
            shown = ", ".join(entry.updates) or "none"
            found.append(
                ("updates", f"updates are {shown}, not {', '.join(req.updates) or 'none'}")
            )
    return found


def _rank(diffs: list[tuple[str, str]]) -> int:
    return sum(_WEIGHTS[field] for field, _ in diffs)


def choose_ddk(
    catalog: Sequence[CatalogEntry],
    fp: HostFingerprint,
    allow_mismatch: bool = False,
    installer: Optional[str] = None,
    installer_kernel: Optional[str] = None,
) -> CatalogEntry:
    """The catalog entry to build in for ``fp`` (or the installer release).

    Among matches, one whose kernel is known wins over one that cannot be checked. Without a
    match, the closest entry is returned if ``allow_mismatch``, else ``MismatchError`` says what
    the host runs, what the closest DDK is and which DDK is needed.
    """
    req = requirement_for(fp, installer, installer_kernel)
    scored = [(differences(entry, req), entry) for entry in catalog]
    matches = [entry for diffs, entry in scored if not diffs]
    if matches:
        return sorted(matches, key=lambda e: not e.kernel)[0]
    if not scored:
        raise MismatchError(
            f"The DDK catalog is empty, so nothing can build for {req.what}.",
            f"Add the {req.describe()} to the catalog.",
        )
    diffs, closest = min(scored, key=lambda pair: _rank(pair[0]))
    if allow_mismatch:
        return closest
    raise MismatchError(
        f"No DDK in the catalog matches {req.what}: the closest is {closest.image} "
        f"({closest.describe()}), whose {'; '.join(text for _, text in diffs)}.",
        f"Add the {req.describe()} to the catalog (the DDK of the same release and hotfix level), "
        "or set allow_mismatch: true to build in the closest one anyway (that pack will not "
        "install on the target).",
    )
