"""The console program as a state machine: recorded transcripts per wording variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from guest_support import PASSWORD, SALT, ddk_files

from xsddkvm.sim import console_wording
from xsddkvm.sim.console import SCREEN_BYTES, Console
from xsddkvm.sim.sandbox import Sandbox
from xsddkvm.sim.terminal import Terminal

FACTS = {"hostname": "ddk", "release": "XenServer DDK release 8.2.1-58", "kernel": "4.19.0+1"}


class Screen:
    def __init__(self) -> None:
        self.data = b""

    def __call__(self, chunk: bytes) -> None:
        self.data += chunk

    def take(self) -> str:
        text, self.data = self.data.decode(), b""
        return text


def make_sandbox(tmp_path: Path, version: str = "8.2.1-58", shadow: bool = True) -> Sandbox:
    sandbox = Sandbox(tmp_path / "guest", tmp_path / "simbin")
    for name, content in ddk_files(version).items():
        if name.endswith("shadow") and not shadow:
            continue
        path = sandbox.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content[0] if isinstance(content, tuple) else content)
        path.chmod(content[1] if isinstance(content, tuple) else 0o644)
    sandbox.prepare()
    return sandbox


def booted(sandbox: Sandbox, variant: str, pv_args: str = "") -> tuple[Terminal, Screen]:
    screen = Screen()
    term = Terminal(sandbox, variant, screen, {**FACTS, "pv_args": pv_args})
    term.boot()
    term.ready()
    return term, screen


def words(variant: str, key: str) -> str:
    return console_wording.text(variant, key, **FACTS, pv_args="")


@pytest.mark.parametrize("variant", sorted(console_wording.WORDING))
def test_first_boot_dialog_mismatch_repeats_then_sets_password(tmp_path, variant) -> None:
    sandbox = make_sandbox(tmp_path, shadow=False)
    term, screen = booted(sandbox, variant)
    assert screen.take().endswith(words(variant, "new_password"))
    term.feed(b"\r")  # empty is refused
    assert screen.take() == "\r\n" + words(variant, "empty") + words(variant, "new_password")
    term.feed(b"secret1\r")
    assert screen.take() == "\r\n" + words(variant, "confirm_password")  # no echo
    term.feed(b"secret2\n")
    assert screen.take() == "\r\n" + words(variant, "mismatch") + words(variant, "new_password")
    term.feed(b"s3cret\r\n")
    term.feed(b"s3cret\r")
    out = screen.take()
    assert "s3cret" not in out
    assert out.endswith(words(variant, "password_set") + words(variant, "banner") + "ddk login: ")
    assert sandbox.check_password("root", "s3cret")
    assert sandbox.first_boot_done
    # a second boot (or a golden image cloned from this disk) does not ask again
    _, again = booted(sandbox, variant)
    assert again.take().endswith("ddk login: ")


def test_noninteractive_skips_the_dialog_and_keeps_the_image_password(tmp_path) -> None:
    sandbox = make_sandbox(tmp_path)
    term, screen = booted(sandbox, "xs7", pv_args="console=hvc0 noninteractive")
    out = screen.take()
    assert words("xs7", "new_password") not in out
    assert out.endswith("ddk login: ")
    assert sandbox.first_boot_done
    assert sandbox.check_password("root", PASSWORD)
    assert SALT in (sandbox.root / "etc/xsddkvm-sim/shadow").read_text()


def test_login_runs_real_commands_and_exit_returns_to_login(tmp_path) -> None:
    sandbox = make_sandbox(tmp_path)
    term, screen = booted(sandbox, "xs6", pv_args="noninteractive")
    screen.take()
    term.feed(b"root\r")
    assert screen.take() == "root\r\nPassword: "
    term.feed(b"wrong\r")
    assert screen.take() == "\r\nLogin incorrect\r\n\r\nddk login: "
    term.feed(b"root\r" + PASSWORD.encode() + b"\r")
    assert screen.take().endswith("Password: \r\n[root@ddk ~]# ")
    term.feed(b"echo hello; cat /nonexistent-x; uname -r\r")
    out = screen.take()
    assert out.startswith("echo hello; cat /nonexistent-x; uname -r\r\n")
    assert "hello\r\n" in out and "No such file" in out and "4.19.0+1\r\n" in out
    assert out.endswith("[root@ddk ~]# ")
    term.feed(b"touch made-on-console\r")
    assert (sandbox.home / "made-on-console").exists()
    screen.take()
    term.feed(b"exit\r")
    assert screen.take().endswith("logout\r\n" + words("xs6", "banner") + "ddk login: ")


def test_line_editing_backspace_and_ctrl_c(tmp_path) -> None:
    sandbox = make_sandbox(tmp_path)
    term, screen = booted(sandbox, "xs7", pv_args="noninteractive")
    term.feed(b"roox\x7ft\r" + PASSWORD.encode() + b"x\x08\r")
    out = screen.take()
    assert "roox\b \bt\r\n" in out and out.endswith("[root@ddk ~]# ")
    term.feed(b"echo abc\x03")
    assert screen.take() == "echo abc^C\r\n[root@ddk ~]# "
    term.feed(b"echo \x1b[Aok\r")  # an arrow key is ignored, not typed
    assert "ok\r\n" in screen.take()


def test_input_before_boot_completes_is_ignored(tmp_path) -> None:
    sandbox = make_sandbox(tmp_path)
    screen = Screen()
    term = Terminal(sandbox, "xs7", screen, {**FACTS, "pv_args": ""})
    term.boot()
    screen.take()
    term.feed(b"root\r")
    assert screen.take() == ""


@pytest.mark.parametrize(
    ("release", "config", "expected"),
    [
        ("5.6.100-39265p", None, "xs5"),
        ("6.5.0-90233c", None, "xs6"),
        ("7.1.0-137", None, "xs7"),
        ("8.2.1-58", None, "xs7"),
        ("8.2.1-58", {"console_wording": "xs6"}, "xs6"),
        ("6.2.0-70446c", {"console_wording": "no-such"}, "xs6"),
    ],
)
def test_variant_follows_the_image(tmp_path, release, config, expected) -> None:
    sandbox = make_sandbox(tmp_path, version=release)
    if config is not None:
        (sandbox.root / "etc/xsddkvm-sim/ddk.json").write_text(json.dumps(config))
    assert console_wording.variant_for(sandbox) == expected


def test_every_variant_defines_every_key() -> None:
    keys = set(console_wording.WORDING["xs7"])
    for variant, table in console_wording.WORDING.items():
        assert set(table) == keys, variant
    prompts = {console_wording.WORDING[v]["new_password"] for v in console_wording.WORDING}
    assert len(prompts) == len(console_wording.WORDING)


def test_the_screen_keeps_the_last_4k_from_a_line_start_and_replays_it() -> None:
    console = Console()
    for i in range(500):
        console.write(f"\x1b[0mline {i:04d}\r\n")
    screen = console.screen()
    assert len(screen) <= SCREEN_BYTES
    assert screen.startswith(b"\x1b[0mline ") and screen.endswith(b"line 0499\r\n")
    client = console.attach()
    assert client.get_nowait() == screen
    console.write(b"more")
    assert client.get_nowait() == b"more"
    console.close()
    assert client.get_nowait() == b""  # the end of the stream
