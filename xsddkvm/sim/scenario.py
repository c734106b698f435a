"""What the simulated pool looks like: hosts, credentials, storage, networks, guest and faults.

A scenario file is YAML; every key is optional (defaults below, declared once) and validated
strictly at load: an unknown key or a wrong type raises ``ScenarioError`` naming
``file: key.path``, with the closest valid key suggested for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml


class ScenarioError(ValueError):
    """A scenario file is invalid; the message reads ``file: key.path: what was expected``."""


@dataclasses.dataclass
class HostSpec:
    name: str = "xs-sim-1"
    address: str = ""  # filled per position: 127.0.0.1, 127.0.0.2, ...
    product_version: str = "8.2.1"
    build_number: str = "58"
    linux: str = "4.19.0+1"
    xen: str = "4.13.5-9.40"
    xapi: str = "1.249"
    updates: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PoolSpec:
    name: str = "sim-pool"
    hosts: list[HostSpec] = dataclasses.field(default_factory=lambda: [HostSpec()])


@dataclasses.dataclass
class Credentials:
    username: str = "root"
    password: str = "xenroot"


@dataclasses.dataclass
class StorageSpec:
    name: str = "Local storage"
    size_gib: int = 64


@dataclasses.dataclass
class NetworkSpec:
    name: str = ""
    bridge: str = ""
    dhcp: bool = True
    management: bool = False


def _default_networks() -> list[NetworkSpec]:
    return [
        NetworkSpec("Pool-wide network associated with eth0", "xenbr0", True, True),
        NetworkSpec("Isolated lab network", "xenbr1", False, False),
    ]


@dataclasses.dataclass
class GuestSpec:
    boot_seconds: float = 0.3
    ssh_port: Union[int, str] = "auto"  # "auto" = 22 if bindable, else one free port


@dataclasses.dataclass
class Faults:
    """Fault knobs, read by the simulator modules as ``host.scenario.faults.<name>``."""

    slow_boot_seconds: float = 0
    no_guest_tools: bool = False
    late_ip_seconds: float = 0
    upload_cut_at_bytes: Optional[int] = None
    corrupt_chunk: Optional[int] = None
    sr_full: bool = False
    session_expiry_calls: Optional[int] = None
    ssh_drops: int = 0
    make_fails: bool = False
    console_noise: bool = False
    api_delay_seconds: float = 0


@dataclasses.dataclass
class Scenario:
    pool: PoolSpec = dataclasses.field(default_factory=PoolSpec)
    credentials: Credentials = dataclasses.field(default_factory=Credentials)
    storage: StorageSpec = dataclasses.field(default_factory=StorageSpec)
    networks: list[NetworkSpec] = dataclasses.field(default_factory=_default_networks)
    guest: GuestSpec = dataclasses.field(default_factory=GuestSpec)
    faults: Faults = dataclasses.field(default_factory=Faults)
    source: str = dataclasses.field(default="<default>", compare=False)

    @property
    def master(self) -> HostSpec:
        return self.pool.hosts[0]


def default_scenario() -> Scenario:
    """The built-in scenario: one host, one SR, a DHCP management network and an isolated one."""
    scenario = Scenario()
    _fill_and_check(scenario, "<default>")
    return scenario


def load_scenario(path: Union[str, Path]) -> Scenario:
    """Read and validate a scenario file; raises ``ScenarioError`` naming ``file: key.path``."""
    name = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read the file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{name}: not valid YAML ({exc})") from exc
    if data is None:
        data = {}
    scenario = _Loader(name).build(Scenario, data, "")
    scenario.source = name
    _fill_and_check(scenario, name)
    return scenario


class _Loader:
    """Builds dataclasses from YAML data, checking keys and types against the annotations."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, where: str, message: str) -> ScenarioError:
        return ScenarioError(
            f"{self.file}: {where}: {message}" if where else f"{self.file}: {message}"
        )

    def build(self, cls: type, data: Any, where: str) -> Any:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a mapping, got {_show(data)}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
        values: dict[str, Any] = {}
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = (
                    f"; did you mean '{close[0]}'?"
                    if close
                    else f"; valid keys: {', '.join(names)}"
                )
                raise self.fail(path, f"unknown key{hint}")
            values[key] = self.convert(hints[key], value, path)
        return cls(**values)

    def convert(self, hint: Any, value: Any, where: str) -> Any:
        origin = typing.get_origin(hint)
        if origin is Union:
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if value is None and len(options) < len(typing.get_args(hint)):
                return None
            if options == [int, str]:  # ssh_port
                if value == "auto" or (_is_int(value) and 0 < value < 65536):
                    return value
                raise self.fail(where, f"expected a port number or 'auto', got {_show(value)}")
            return self.convert(options[0], value, where)
        if origin is list:
            if not isinstance(value, list):
                raise self.fail(where, f"expected a list, got {_show(value)}")
            (item,) = typing.get_args(hint)
            return [self.convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        if dataclasses.is_dataclass(hint):
            return self.build(typing.cast(type, hint), value, where)
        if hint is bool:
            if isinstance(value, bool):
                return value
            raise self.fail(where, f"expected true or false, got {_show(value)}")
        if hint is int or hint is float:
            kind = "an integer" if hint is int else "a number"
            if not (_is_int(value) or (hint is float and isinstance(value, float))):
                raise self.fail(where, f"expected {kind}, got {_show(value)}")
            if value < 0:
                raise self.fail(where, f"expected {kind} >= 0, got {_show(value)}")
            return hint(value)
        if isinstance(value, str):
            return value
        hint_text = " (quote it)" if isinstance(value, (int, float)) else ""
        raise self.fail(where, f"expected a string{hint_text}, got {_show(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    return "nothing" if value is None else repr(value)


def _fill_and_check(scenario: Scenario, file: str) -> None:
    """Cross-field rules and positional defaults (host names and loopback addresses)."""
    hosts = scenario.pool.hosts
    if not hosts:
        raise ScenarioError(f"{file}: pool.hosts: expected at least one host")
    seen: set[str] = set()
    for i, host in enumerate(hosts):
        if i and host.name == HostSpec.name:
            host.name = f"xs-sim-{i + 1}"
        host.address = host.address or f"127.0.0.{i + 1}"
        try:
            ipaddress.IPv4Address(host.address)
        except ValueError:
            raise ScenarioError(
                f"{file}: pool.hosts[{i}].address: expected an IPv4 address, got {host.address!r}"
            ) from None
        if host.address in seen:
            raise ScenarioError(
                f"{file}: pool.hosts[{i}].address: {host.address} is already used by another host"
            )
        seen.add(host.address)
    managed = [n for n in scenario.networks if n.management]
    if len(managed) != 1:
        raise ScenarioError(
            f"{file}: networks: expected exactly one network with management: true, "
            f"got {len(managed)}"
        )
    for i, net in enumerate(scenario.networks):
        if not net.bridge:
            raise ScenarioError(f"{file}: networks[{i}].bridge: expected a bridge name")
