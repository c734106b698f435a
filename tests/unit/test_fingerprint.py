"""Host fingerprints: a stable digest of the software facts, read over XenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xsddkvm.fingerprint import HostFingerprint, read_fingerprint
from xsddkvm.secrets import Secret
from xsddkvm.sim.scenario import default_scenario
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi.session import XapiSession
from xsddkvm.xapi.tls import TlsSettings

BASE = HostFingerprint("https://a", "8.2.1", "58", "4.19.0+1", ["XS82E002", "XS82E001"])


def test_digest_is_stable_and_ignores_url_and_update_order() -> None:
    same = HostFingerprint("https://b", "8.2.1", "58", "4.19.0+1", ["XS82E001", "XS82E002"])
    assert BASE.digest == same.digest and len(BASE.digest) == 16
    assert HostFingerprint.from_dict(BASE.to_dict()) == BASE


@pytest.mark.parametrize(
    "changed",
    [
        {"linux": "4.19.0+2"},
        {"build_number": "59"},
        {"product_version": "8.2.2"},
        {"updates": ["XS82E001"]},
    ],
)
def test_each_fact_changes_the_digest(changed: dict[str, object]) -> None:
    data = {**BASE.to_dict(), **changed}
    assert HostFingerprint.from_dict(data).digest != BASE.digest


@pytest.fixture()
def sim() -> Iterator[SimServer]:
    server = SimServer(default_scenario()).start()
    try:
        yield server
    finally:
        server.stop()


def read(server: SimServer) -> HostFingerprint:
    tls = TlsSettings(pin_sha256=server.fingerprint)
    with XapiSession(server.url, server.username, Secret(server.password), tls) as xs:
        return read_fingerprint(xs)


def test_reads_the_master_and_follows_hotfixes(sim: SimServer) -> None:
    before = read(sim)
    assert (before.url, before.product_version, before.build_number) == (sim.url, "8.2.1", "58")
    assert before.linux == "4.19.0+1" and before.updates == []
    assert before.product_brand == "XenServer"
    sim.host.apply_hotfix(linux="4.19.0+2", update_name="XS82E010")
    after = read(sim)
    assert after.linux == "4.19.0+2" and after.updates == ["XS82E010"]
    assert after.digest != before.digest
