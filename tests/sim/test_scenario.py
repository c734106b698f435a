"""Scenario files: defaults declared once, strict validation naming ``file: key.path``."""

from __future__ import annotations

from pathlib import Path

import pytest

from xsddkvm.sim.scenario import ScenarioError, default_scenario, load_scenario

GOOD = """
pool:
  name: lab
  hosts:
    - name: master
      build_number: "60"
      updates: [XS82ECU1001]
    - name: supporter
credentials: {username: root, password: s3cret}
storage: {size_gib: 8}
networks:
  - {name: mgmt, bridge: xenbr0, dhcp: true, management: true}
guest: {boot_seconds: 0, ssh_port: 2222}
faults:
  ssh_drops: 2
  session_expiry_calls: 5
  upload_cut_at_bytes: null
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def test_defaults() -> None:
    scenario = default_scenario()
    (host,) = scenario.pool.hosts
    assert (host.name, host.address, host.product_version, host.build_number) == (
        "xs-sim-1", "127.0.0.1", "8.2.1", "58",
    )  # fmt: skip
    assert (host.linux, host.xen, host.xapi, host.updates) == (
        "4.19.0+1",
        "4.13.5-9.40",
        "1.249",
        [],
    )
    assert (scenario.credentials.username, scenario.credentials.password) == ("root", "xenroot")
    assert [(n.bridge, n.dhcp, n.management) for n in scenario.networks] == [
        ("xenbr0", True, True), ("xenbr1", False, False),
    ]  # fmt: skip
    assert scenario.guest.ssh_port == "auto" and scenario.guest.boot_seconds == 0.3
    assert scenario.faults.session_expiry_calls is None and scenario.faults.ssh_drops == 0
    assert scenario.storage.size_gib == 64


def test_good_file(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    master, supporter = scenario.pool.hosts
    assert (master.name, master.address, master.build_number) == ("master", "127.0.0.1", "60")
    assert master.updates == ["XS82ECU1001"] and master.product_version == "8.2.1"
    assert (supporter.name, supporter.address) == ("supporter", "127.0.0.2")
    assert scenario.credentials.password == "s3cret" and scenario.storage.size_gib == 8
    assert scenario.guest.ssh_port == 2222 and scenario.guest.boot_seconds == 0.0
    assert scenario.faults.ssh_drops == 2 and scenario.faults.session_expiry_calls == 5
    assert scenario.faults.upload_cut_at_bytes is None
    assert scenario.source == str(tmp_path / "lab.yml")


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, "")) == default_scenario()


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    assert error(tmp_path, "faults:\n  ssh_drop: 1\n") == (
        "faults.ssh_drop: unknown key; did you mean 'ssh_drops'?"
    )
    assert error(tmp_path, "pool:\n  hosts:\n    - {}\n    - {kernel: x}\n").startswith(
        "pool.hosts[1].kernel: unknown key; valid keys: name, address,"
    )


def test_wrong_types_name_the_key(tmp_path: Path) -> None:
    assert (
        error(tmp_path, "faults:\n  ssh_drops: x\n")
        == "faults.ssh_drops: expected an integer, got 'x'"
    )
    assert (
        error(tmp_path, "faults:\n  sr_full: 1\n")
        == "faults.sr_full: expected true or false, got 1"
    )
    assert error(tmp_path, "faults:\n  api_delay_seconds: -1\n") == (
        "faults.api_delay_seconds: expected a number >= 0, got -1"
    )
    assert error(tmp_path, "pool:\n  hosts:\n    - build_number: 58\n") == (
        "pool.hosts[0].build_number: expected a string (quote it), got 58"
    )
    assert error(tmp_path, "guest:\n  ssh_port: high\n") == (
        "guest.ssh_port: expected a port number or 'auto', got 'high'"
    )
    assert error(tmp_path, "networks: {}\n") == "networks: expected a list, got {}"


def test_cross_field_rules(tmp_path: Path) -> None:
    assert error(tmp_path, "networks:\n  - {name: a, bridge: xenbr0}\n") == (
        "networks: expected exactly one network with management: true, got 0"
    )
    assert error(
        tmp_path, "pool:\n  hosts:\n    - address: 127.0.0.1\n    - address: 127.0.0.1\n"
    ) == ("pool.hosts[1].address: 127.0.0.1 is already used by another host")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    assert error(tmp_path, "faults: [\n").startswith("not valid YAML")
