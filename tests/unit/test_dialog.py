"""Console dialogs on recorded transcripts: wording variants, repeats, noise, failures."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Union

import pytest

from xsddkvm.errors import ConsoleError
from xsddkvm.guest.dialog import (
    ConsoleReader,
    clean,
    first_boot_dialog,
    login_dialog,
    read_host_key,
    read_ipv4,
    run_dialog,
    shell_command,
)
from xsddkvm.guest.ssh import fingerprint
from xsddkvm.secrets import Secret

Reply = Union[bytes, Callable[[bytes], bytes]]
PASSWORD = Secret("Xk3" + "dialogpass" * 2)
PW = PASSWORD.reveal().encode()


class RecordedConsole:
    """A guest replaying a recorded session: ``intro``, then one reply per line typed."""

    def __init__(self, intro: bytes, replies: Sequence[Reply] = (), chunk: int = 0, echo=False):
        self._out, self._replies = bytearray(intro), list(replies)
        self._chunk, self._echo = chunk, echo
        self._line = b""
        self._cond = threading.Condition()
        self.typed: list[bytes] = []

    def read(self, timeout: float) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._out), timeout)
            size = self._chunk or len(self._out)
            data = bytes(self._out[:size])
            del self._out[:size]
            return data

    def write(self, data: bytes) -> None:
        with self._cond:
            for byte in data:
                if byte in b"\r\n":
                    line, self._line = self._line, b""
                    self.typed.append(line)
                    if self._replies:
                        reply = self._replies.pop(0)
                        self._out += reply(line) if callable(reply) else reply
                else:
                    self._line += bytes([byte])
                    if self._echo:
                        self._out += bytes([byte])
            self._cond.notify_all()

    def close(self) -> None:
        pass


BANNER = (
    b"\r\nXenServer DDK release 7.1.0-1234 (xenenterprise)\r\nKernel 4.4.0+10 on an x86_64\r\n\r\n"
)
LOGGED_IN = [b"root\r\nPassword: ", b"\r\nLast login: Mon Nov 25 on hvc0\r\n[root@ddk ~]# "]

# Three wordings, as the DDK (or the simulator's variants of it) prints them.
VARIANTS = {
    "xs5": (
        b"Linux version 2.6.18-128.1.6.el5.xs5.5.0.496.1012xen (root@ddk)\r\n"
        b"Starting sshd: [  OK  ]\r\n*** First boot configuration ***\r\n\r\n"
        b"Enter new root password: ",
        [
            b"\r\nConfirm root password: ",
            b"\r\nRoot password set.\r\n\r\n" + BANNER + b"ddk login: ",
        ],
    ),
    "xs6": (
        b"\x1b[H\x1b[2JLinux version 2.6.32.43-0.4.1.xs1.8.0.835.170778xen\r\n"
        b"Starting udev: \x1b[60G[  \x1b[0;32mOK\x1b[0;39m  ]\r\n"
        b"\x1b[H\x1b[2JWelcome to the XenServer DDK.\r\n\r\n"
        b"Please enter a new password for the root user: ",
        [
            b"\r\nPlease re-enter the password: ",
            b"\r\nThe root password has been set.\r\n\r\n" + BANNER + b"ddk login: ",
        ],
    ),
    "xs7": (
        b"[\x1b[32m  OK  \x1b[0m] Started OpenSSH server daemon.\r\n"
        b"\r\nSet the password for the root account of this DDK VM.\r\nNew root password: ",
        [
            b"\r\nRetype new root password: ",
            b"\r\npasswd: all authentication tokens updated successfully.\r\n"
            + BANNER
            + b"ddk login: ",
        ],
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_first_boot_dialog_in_each_wording(variant: str) -> None:
    intro, replies = VARIANTS[variant]
    console = RecordedConsole(intro, [*replies, *LOGGED_IN])
    texts: list[str] = []
    transcript = run_dialog(console, first_boot_dialog(PASSWORD), on_text=texts.append)
    assert console.typed == [PW, PW, b"root", PW]
    assert transcript.endswith("[root@ddk ~]# ") and "\x1b" not in transcript
    assert "".join(texts) == transcript


def test_mismatch_makes_the_dialog_start_the_password_again() -> None:
    intro, replies = VARIANTS["xs7"]
    mismatch = b"\r\nSorry, passwords do not match.\r\nNew root password: "
    console = RecordedConsole(intro, [replies[0], mismatch, *replies, *LOGGED_IN])
    run_dialog(console, first_boot_dialog(PASSWORD))
    assert console.typed == [PW, PW, PW, PW, b"root", PW]


def test_noise_and_escape_codes_split_across_reads() -> None:
    noise = b"\r\n[   12.345678] random: crng init done\r\n\x1b7\x1b8\x1b[?25h\x1b[1;33m\x1b[0m"
    intro, replies = VARIANTS["xs6"]
    noisy = [noise + r for r in replies] + [noise + r for r in LOGGED_IN]
    console = RecordedConsole(noise + intro, noisy, chunk=3)
    transcript = run_dialog(console, first_boot_dialog(PASSWORD))
    assert console.typed == [PW, PW, b"root", PW]
    assert "Starting udev: [  OK  ]" in transcript and "\x1b" not in transcript


def test_refused_login_after_setting_the_password() -> None:
    intro, replies = VARIANTS["xs5"]
    console = RecordedConsole(
        intro, [*replies, LOGGED_IN[0], b"\r\nLogin incorrect\r\n\r\nddk login: "]
    )
    with pytest.raises(ConsoleError, match="the password just set was refused") as info:
        run_dialog(console, first_boot_dialog(PASSWORD))
    assert "step 'login refused'" in info.value.message


def test_timeout_names_the_step_and_shows_the_screen_redacted() -> None:
    intro, replies = VARIANTS["xs7"]
    # A broken tty that echoes everything, the password too; then the guest hangs.
    console = RecordedConsole(intro, [*replies, b"\r\nPassword: ", b"\r\n"], echo=True)
    with pytest.raises(ConsoleError) as info:
        run_dialog(console, first_boot_dialog(PASSWORD, timeout=0.3))
    message = info.value.message
    assert "step 'shell prompt'" in message and "waited 0.3 s" in message
    assert "Last screen:" in message and "ddk login: root" in message
    assert PASSWORD.reveal() not in message + info.value.paragraph() and "***" in message


def test_closed_console_is_a_console_error() -> None:
    class Closed(RecordedConsole):
        def read(self, timeout: float) -> bytes:
            raise EOFError

    with pytest.raises(ConsoleError, match="console closed"):
        run_dialog(Closed(b""), login_dialog(PASSWORD))


def test_login_dialog_on_a_stale_screen_uses_the_bottom_line() -> None:
    stale = b"ddk login: root\r\nPassword: \r\n[root@ddk ~]# logout\r\n" + BANNER + b"ddk login: "
    console = RecordedConsole(stale, LOGGED_IN)
    run_dialog(console, login_dialog(PASSWORD))
    assert console.typed == [b"root", PW]


def test_login_dialog_when_already_logged_in_types_nothing() -> None:
    console = RecordedConsole(b"ddk login: root\r\nPassword: \r\n[root@ddk ~]# ")
    run_dialog(console, login_dialog(PASSWORD))
    assert console.typed == []


def test_login_dialog_nudges_a_silent_console() -> None:
    console = RecordedConsole(b"", [b"\r\n" + BANNER + b"ddk login: ", *LOGGED_IN])
    run_dialog(console, login_dialog(PASSWORD), nudge_every=0.05)
    assert console.typed == [b"", b"root", PW]


def test_clean_strips_escapes_and_carriage_returns() -> None:
    assert clean("\x1b[1mA\x1b[0m\r\n\x1b]0;title\x07B\x1b(B\x1b=C\x07") == "A\nBC"


def test_reader_screen_keeps_the_last_25_lines() -> None:
    reader = ConsoleReader(RecordedConsole(b"".join(b"line %d\r\n" % i for i in range(40))))
    reader.read(1)
    assert reader.screen.splitlines() == [f"line {i}" for i in range(16, 40)]


def shell(env: dict[str, str]) -> Callable[[bytes], bytes]:
    """A guest shell at a vt100 prompt: echoes the line, runs it, prints output with CRLF."""

    def run(line: bytes) -> bytes:
        out = subprocess.run(
            ["/bin/sh", "-c", line.decode()], capture_output=True, env=env, timeout=10
        ).stdout
        return line + b"\r\n" + out.replace(b"\n", b"\r\n") + b"[root@ddk ~]# "

    return run


def test_shell_command_returns_only_the_output() -> None:
    console = RecordedConsole(b"[root@ddk ~]# ", [shell(dict(os.environ))])
    assert shell_command(console, "printf 'a\\nb\\n'; echo done") == "a\nb\ndone"


def test_read_host_key_and_its_fingerprint_match_ssh_keygen(tmp_path: Path) -> None:
    key = tmp_path / "host"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(key)])
    pub = key.with_suffix(".pub")

    def guest_shell(typed: bytes) -> bytes:  # the guest's key lives at /etc/ssh/...
        return shell(dict(os.environ))(typed.replace(b"/etc/ssh/ssh_host_rsa_key.pub", bytes(pub)))

    line = read_host_key(RecordedConsole(b"[root@ddk ~]# ", [guest_shell]))
    assert line == " ".join(pub.read_text().split()[:2])
    keygen = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    assert fingerprint(line) == keygen.stdout.split()[1]


def test_read_ipv4_falls_back_when_hostname_has_no_dash_i(tmp_path: Path) -> None:
    (tmp_path / "hostname").write_text(
        "#!/bin/sh\necho 'hostname: invalid option -- I' >&2\nexit 1\n"
    )
    (tmp_path / "ip").write_text(
        "#!/bin/sh\necho '1: lo    inet 127.0.0.1/8 scope host lo'\n"
        "echo '2: eth0    inet 10.71.0.5/24 brd 10.71.0.255 scope global eth0'\n"
    )
    for tool in ("hostname", "ip"):
        (tmp_path / tool).chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    assert read_ipv4(RecordedConsole(b"# ", [shell(env)])) == ["10.71.0.5"]


def test_read_ipv4_from_hostname_dash_i(tmp_path: Path) -> None:
    (tmp_path / "hostname").write_text("#!/bin/sh\necho '127.0.0.7 192.168.1.9 '\n")
    (tmp_path / "hostname").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    assert read_ipv4(RecordedConsole(b"# ", [shell(env)])) == ["127.0.0.7", "192.168.1.9"]
