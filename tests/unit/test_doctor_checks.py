"""Pure parts of `doctor`: package checks, the DDK label, the size wording."""

from __future__ import annotations

from importlib import metadata

import pytest

from xsddkvm.doctor import DdkImage, _size, check_package


def test_paramiko_5_fails_with_the_pin_to_install() -> None:
    check = check_package("paramiko", "paramiko", "paramiko>=3.4,<5", lambda _: "5.1.0")
    assert check.status == "FAIL"
    assert "5.1.0" in check.detail and "CentOS 5" in check.detail
    assert check.fix == "Run `pip install 'paramiko>=3.4,<5'`."
    assert check_package("paramiko", "paramiko", "paramiko>=3.4,<5", lambda _: "4.0.0").status == (
        "PASS"
    )


def test_missing_package_fails() -> None:
    check = check_package("xsddkvm_no_such_module", "nothing", "nothing>=1")
    assert (check.status, check.detail) == ("FAIL", "not installed")
    assert "pip install 'nothing>=1'" in (check.fix or "")


def test_package_without_metadata_still_passes() -> None:
    def missing(dist: str) -> str:
        raise metadata.PackageNotFoundError(dist)

    assert check_package("yaml", "PyYAML", "PyYAML>=6.0", missing).status == "PASS"


@pytest.mark.parametrize(
    ("label", "version", "build"),
    [
        ("XenServer DDK 8.2.1-58", "8.2.1", "58"),
        ("XenServer DDK 6.1.0-58481p import", "6.1.0", "58481p"),  # ddk.md §1.2, XenRT comment
        ("Citrix Hypervisor DDK 8.0.0-1", "8.0.0", "1"),
        ("my build VM", "", ""),
    ],
)
def test_ddk_version_from_the_vm_label(label: str, version: str, build: str) -> None:
    image = DdkImage.from_label(label, 2**30)
    assert (image.version, image.build, image.size) == (version, build, 2**30)


def test_sizes_in_words() -> None:
    assert [_size(n) for n in (0, 1023, 1024, 3 * 2**20, 64 * 2**30, 5 * 2**40)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "3.0 MiB",
        "64.0 GiB",
        "5120.0 GiB",
    ]
