"""Fixtures for simulator tests: a real SimServer over HTTPS driven by the real XenAPI SDK."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import XenAPI

from xsddkvm.sim.scenario import Faults, HostSpec, PoolSpec, default_scenario
from xsddkvm.sim.server import SimServer


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., SimServer]]:
    """Start a SimServer; keyword arguments override fault knobs, ``hosts=N`` makes a pool."""
    servers: list[SimServer] = []

    def make(hosts: int = 1, **faults: Any) -> SimServer:
        scenario = default_scenario()
        scenario.faults = dataclasses.replace(Faults(), **faults)
        if hosts > 1:
            specs = [
                HostSpec(name=f"xs-sim-{i + 1}", address=f"127.0.0.{i + 1}") for i in range(hosts)
            ]
            scenario.pool = PoolSpec(hosts=specs)
        server = SimServer(scenario, data_dir=tmp_path / f"sim{len(servers)}")
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimServer]) -> SimServer:
    return make_sim()


@pytest.fixture
def session(sim: SimServer) -> Iterator[Any]:
    """A logged-in XenAPI session on the default simulator (logged out afterwards)."""
    xs = XenAPI.Session(sim.url, ignore_ssl=True)
    xs.xenapi.login_with_password(sim.username, sim.password, "1.0", "tests")
    yield xs
    if xs.handle:
        xs.xenapi.session.logout()


@pytest.fixture
def xapi(session: Any) -> Any:
    return session.xenapi
