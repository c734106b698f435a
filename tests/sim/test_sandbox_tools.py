"""A machine without the build tools the simulated DDK uses gets an error naming the tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from xsddkvm.sim.sandbox import Sandbox


def test_a_missing_build_tool_is_named_with_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "echo", "cat"):  # a machine with a shell but no make/rpmbuild
        (bare / tool).symlink_to(f"/bin/{tool}")
    monkeypatch.setenv("PATH", str(bare))
    sandbox = Sandbox(tmp_path / "guest", tmp_path / "simbin")
    sandbox.prepare()
    status, output = sandbox.run("rpmbuild -bb x.spec", lambda _chunk: None)
    assert status == 127
    assert b"rpmbuild: not installed on the machine running the xsddkvm simulator" in output
    assert b"apt-get install rpm" in output


def test_present_tools_are_not_shadowed(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "guest", tmp_path / "simbin")
    sandbox.prepare()
    assert not (tmp_path / "simbin" / "make").exists()
