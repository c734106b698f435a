"""Component tests: the real CLI, in-process, against a real simulated host over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import PASSWORD_ENV

from xsddkvm.sim.scenario import default_scenario
from xsddkvm.sim.server import SimServer


@pytest.fixture(scope="session")
def ddk_xva(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated DDK image, made once per test session."""
    from xsddkvm.sim.ddk_image import make_image

    path = tmp_path_factory.mktemp("images") / "ddk-8.2.1.xva"
    make_image(path, form="xva", product_version="8.2.1", build_number="58", kernel="4.19.0+1")
    return path


@pytest.fixture()
def sim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SimServer]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    server = SimServer(default_scenario())
    server.start()
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    try:
        yield server
    finally:
        server.stop()
