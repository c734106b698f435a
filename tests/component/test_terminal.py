"""What `xsddkvm build playbooks/helloworld.yml` looks like on a real terminal, and off one.

On a terminal (tmux, 160x50) the progress bar redraws in place and is replaced by a summary
line; `--json` and piped output carry no control codes at all.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import REPO

BUILD_TIMEOUT = 120.0
STAGE_LINES = (
    "==> connect: log in to the host",
    "==> image: import or clone the DDK",
    "==> build: run the make targets",
    "==> fetch:",
)


@pytest.fixture(scope="module")
def xdg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module, so the simulated DDK image is generated once."""
    return tmp_path_factory.mktemp("xdg")


def build_command(xdg: Path, out: Path, *extra: str) -> list[str]:
    return [
        "env", f"XDG_DATA_HOME={xdg}", f"PYTHONPATH={REPO}",
        sys.executable, "-m", "xsddkvm", "build", "playbooks/helloworld.yml", "-o", str(out),
        *extra,
    ]  # fmt: skip


class Tmux:
    """A private tmux server (its own socket) with one 160x50 pane running bash."""

    def __init__(self, raw: Path) -> None:
        self.socket = f"xsddkvm-test-{uuid.uuid4().hex[:12]}"
        self.tmux("new-session", "-d", "-x", "160", "-y", "50", "-s", "t", "bash --norc -i")
        # Every byte the pane receives, control codes included.
        self.tmux("pipe-pane", "-t", "t", "-o", f"cat >> {shlex.quote(str(raw))}")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        """The pane as rendered, with its scrollback, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "t")

    def run(self, command: list[str], timeout: float) -> tuple[int, str]:
        """Type ``command`` into the shell; wait until it has finished; (exit status, screen)."""
        marker = f"__done_{uuid.uuid4().hex[:8]}"
        line = f"cd {shlex.quote(str(REPO))} && {shlex.join(command)}; echo {marker}=$?"
        self.tmux("send-keys", "-t", "t", "-l", line)
        self.tmux("send-keys", "-t", "t", "Enter")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(rf"^{marker}=(\d+)$", self.screen(), re.M)
            if found:
                return int(found.group(1)), self.screen()
            time.sleep(0.2)  # polling the pane: tmux has no "wait for text"
        raise AssertionError(f"no result in {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path / "raw.log")
    try:
        yield term
    finally:
        term.close()


def run_on_pty(command: list[str], timeout: float) -> tuple[int, bytes]:
    """Run with stdin/stdout/stderr on a pseudo-terminal whose driver adds nothing (no ONLCR)."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=REPO)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no end of output in {timeout} s: {b''.join(chunks)!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=30), b"".join(chunks)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_build_on_a_terminal_shows_stages_progress_bar_and_live_log(
    tmux: Tmux, xdg: Path, tmp_path: Path
) -> None:
    code, screen = tmux.run(build_command(xdg, tmp_path / "out"), BUILD_TIMEOUT)
    assert code == 0, screen
    lines = screen.splitlines()
    for stage in STAGE_LINES:
        assert any(line.startswith(stage) for line in lines), (stage, screen)
    assert sum(line.startswith("    | ") for line in lines) > 10  # the live build log
    assert "    | Welcome to XenServer DDK release 8.2.1-58 (xenenterprise)!" in lines
    assert re.search(r"^    upload: 1\.0 MiB in \d+\.\d s", screen, re.M)
    assert re.search(r"^    \S+/helloworld\.iso \(.*, md5 verified\)$", screen, re.M)
    output = lines[: [i for i, line in enumerate(lines) if "__done_" in line][-1]]
    assert output[-1] == "build: success"
    # The bar was drawn in place, then cleared: none is left on the screen.
    raw = (tmp_path / "raw.log").read_bytes().decode("utf-8", "replace")
    bars = re.findall(r"\r\x1b\[K    upload \[#* *\] +\d+\.\d% ", raw)
    assert bars, raw[:2000]
    assert not re.search(r"upload \[#* *\]", screen)


def test_json_on_a_terminal_is_only_json(xdg: Path, tmp_path: Path) -> None:
    code, output = run_on_pty(build_command(xdg, tmp_path / "out", "--json"), BUILD_TIMEOUT)
    assert code == 0, output[-3000:]
    assert b"\x1b" not in output and b"\r" not in output
    events = [json.loads(line) for line in output.decode().splitlines()]
    assert any(e["event"] == "progress" and e["what"] == "upload" for e in events)
    assert events[-1]["event"] == "result" and events[-1]["ok"] is True


def test_piped_output_has_no_control_codes(xdg: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        build_command(xdg, tmp_path / "out"), cwd=REPO, capture_output=True, timeout=BUILD_TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for stream in (done.stdout, done.stderr):
        assert b"\x1b" not in stream and b"\r" not in stream
    text = done.stderr.decode()
    assert all(stage in text for stage in STAGE_LINES)
    assert "    upload: 1.0 MiB in " in text and "%" not in text.split("==> network")[0]
    assert text.rstrip("\n").endswith("build: success")
