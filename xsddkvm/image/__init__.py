"""Client side of the image formats: the XVA writer/reader and the DDK ISO converter."""

from __future__ import annotations

from .ddk_iso import DdkIso, open_ddk_iso
from .xva import (
    VmSpec,
    XvaHeader,
    XvaStream,
    XvaVersion,
    read_xva_header,
    validate_xva,
    xva_from_raw,
)

__all__ = [
    "DdkIso",
    "VmSpec",
    "XvaHeader",
    "XvaStream",
    "XvaVersion",
    "open_ddk_iso",
    "read_xva_header",
    "validate_xva",
    "xva_from_raw",
]
