"""The DDK <-> host rule (ddk.md §5): build and kernel must match; installers ignore hotfixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from xsddkvm.errors import MismatchError
from xsddkvm.exit_codes import ExitCode
from xsddkvm.fingerprint import HostFingerprint
from xsddkvm.matching import CatalogEntry, choose_ddk, entry_from_image, parse_ddk_label

HOST = HostFingerprint("https://xs1.lab", "8.2.1", "58", "4.19.0+1", ["XS82E001"], "XenServer")
GA = CatalogEntry("/isos/ga.iso", "8.2.1", "58", "4.19.0+1")
OTHER_BUILD = CatalogEntry("/isos/old.iso", "8.2.1", "57", "4.19.0+1")
OTHER_KERNEL = CatalogEntry("/isos/hf.iso", "8.2.1", "58", "4.19.0+2")
UNKNOWN_KERNEL = CatalogEntry("/isos/bare.iso", "8.2.1", "58")


def test_build_and_kernel_must_both_match() -> None:
    assert choose_ddk([OTHER_BUILD, OTHER_KERNEL, GA], HOST) is GA


def test_a_known_kernel_wins_over_an_unknown_one() -> None:
    assert choose_ddk([UNKNOWN_KERNEL, GA], HOST) is GA
    assert choose_ddk([UNKNOWN_KERNEL], HOST) is UNKNOWN_KERNEL


def test_kernel_mismatch_names_host_closest_ddk_and_the_one_needed() -> None:
    hotfixed = HostFingerprint("https://xs1.lab", "8.2.1", "58", "4.19.0+5", [], "XenServer")
    with pytest.raises(MismatchError) as caught:
        choose_ddk([OTHER_BUILD, GA], hotfixed)
    err = caught.value
    assert err.exit_code == ExitCode.MISMATCH
    assert "host https://xs1.lab (XenServer 8.2.1-58, kernel 4.19.0+5)" in err.message
    assert "closest is /isos/ga.iso (DDK 8.2.1-58, kernel 4.19.0+1)" in err.message
    assert "kernel is 4.19.0+1, not 4.19.0+5" in err.message
    assert "DDK 8.2.1-58 with kernel 4.19.0+5" in (err.hint or "")


def test_allow_mismatch_returns_the_closest() -> None:
    newer = HostFingerprint("https://xs1.lab", "8.2.1", "59", "4.19.0+1", [])
    assert choose_ddk([OTHER_KERNEL, GA], newer, allow_mismatch=True) is GA


def test_declared_updates_are_compared_when_both_sides_know_them() -> None:
    with_updates = CatalogEntry("/isos/e1.iso", "8.2.1", "58", "4.19.0+1", updates=("XS82E001",))
    without = CatalogEntry("/isos/e0.iso", "8.2.1", "58", "4.19.0+1", updates=())
    assert choose_ddk([without, with_updates], HOST) is with_updates
    with pytest.raises(MismatchError, match="updates are none, not XS82E001"):
        choose_ddk([without], HOST)


def test_installer_target_wants_the_release_ddk_with_its_base_kernel() -> None:
    hotfixed = HostFingerprint("https://xs1.lab", "8.2.1", "60", "4.19.0+9", ["XS82E050"])
    ddk_71 = CatalogEntry("/isos/7.1.iso", "7.1.0", "137272c", "4.4.0+2")
    assert choose_ddk([GA, ddk_71], hotfixed, installer="7.1.0") is ddk_71
    assert choose_ddk([OTHER_KERNEL, GA], hotfixed, installer="8.2.1") is GA
    with pytest.raises(MismatchError, match="installer 6.5"):
        choose_ddk([GA, ddk_71], hotfixed, installer="6.5")


def test_empty_catalog_says_what_to_add() -> None:
    with pytest.raises(MismatchError, match="catalog is empty") as caught:
        choose_ddk([], HOST)
    assert "DDK 8.2.1-58 with kernel 4.19.0+1" in (caught.value.hint or "")


def test_ddk_label() -> None:
    assert parse_ddk_label("XenServer DDK 8.2.1-58") == ("8.2.1", "58")
    assert parse_ddk_label("Citrix Hypervisor DDK 8.2.0-10xyz") == ("8.2.0", "10xyz")
    assert parse_ddk_label("CentOS 7") == ("", "")


@pytest.mark.parametrize("form", ["xva", "iso"])
def test_entries_read_version_from_the_image_and_declared_facts_win(
    tmp_path: Path, form: str
) -> None:
    from xsddkvm.sim.ddk_image import make_image

    path = make_image(
        tmp_path / f"ddk.{form}", form=form, product_version="7.1.0", build_number="137272c"
    )
    entry = entry_from_image(path, "ab" * 32, kernel="4.4.0+2", updates=["B", "A"])
    assert (entry.product_version, entry.build_number) == ("7.1.0", "137272c")
    assert entry.kernel == "4.4.0+2" and entry.updates == ("A", "B")
    assert entry.digest == "ab" * 32
    assert entry_from_image(path, build_number="1").build_number == "1"


def test_an_image_is_assumed_to_ship_its_release_kernel(tmp_path: Path) -> None:
    from xsddkvm.sim.ddk_image import make_image

    path = make_image(tmp_path / "ddk.xva", product_version="8.2.1", build_number="58")
    assert entry_from_image(path).kernel == "4.19.0+1"
    assert entry_from_image(path, kernel="4.19.0+2").kernel == "4.19.0+2"
