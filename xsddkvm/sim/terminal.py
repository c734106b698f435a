"""The guest side of the text console: boot text, first-boot password dialog, login, shell.

A state machine over typed bytes: ``feed`` takes what the console client sends, ``emit`` receives
what the guest prints. Wording comes from ``console_wording`` (shared/reference/ddk.md §2).
"""

from __future__ import annotations

from typing import Callable

from . import console_wording
from .sandbox import Sandbox

Emit = Callable[[bytes], None]

_ENTER = (0x0D, 0x0A)
_BACKSPACE = (0x7F, 0x08)
_CTRL_C, _CTRL_D, _ESC = 0x03, 0x04, 0x1B

# states in which typed characters are not echoed
_SECRET = ("new_password", "confirm_password", "password")


class Terminal:
    """One running guest's console program; ``facts`` fills the wording placeholders."""

    def __init__(self, sandbox: Sandbox, variant: str, emit: Emit, facts: dict[str, str]) -> None:
        self.sandbox = sandbox
        self.variant = variant
        self.facts = facts
        self._emit = emit
        self.state = "boot"
        self._line = bytearray()
        self._after_cr = False
        self._escape = 0  # 1 after ESC, 2 inside a CSI sequence
        self._first_password = ""
        self._user = ""

    def say(self, key: str, **extra: str) -> None:
        """Emit one wording entry in a single write (so noise never lands inside a prompt)."""
        self._emit(console_wording.text(self.variant, key, **{**self.facts, **extra}).encode())

    # -- boot -------------------------------------------------------------------------------
    def boot(self) -> None:
        self.say("boot")

    def panic(self, reason: str) -> None:
        self.state = "dead"
        self.say("panic", reason=reason)

    def ready(self) -> None:
        """Services are up: run the first-boot dialog once (unless noninteractive), then getty."""
        self.say("services")
        if not self.sandbox.first_boot_done:
            if "noninteractive" not in self.facts.get("pv_args", "").split():
                self.say("dialog_intro")
                self._prompt("new_password")
                return
            self.sandbox.mark_first_boot_done()
        self._to_login()

    # -- input ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        for byte in data:
            if self.state in ("boot", "dead"):
                continue
            if self._escape:
                self._skip_escape(byte)
            elif byte in _ENTER:
                if not (byte == 0x0A and self._after_cr):
                    self._enter()
            elif byte in _BACKSPACE:
                self._backspace()
            elif byte == _CTRL_C:
                self._emit(b"^C\r\n")
                self._line.clear()
                self._prompt(self.state)
            elif byte == _CTRL_D and not self._line and self.state == "shell":
                self._logout()
            elif byte == _ESC:
                self._escape = 1
            elif byte >= 0x20:
                self._line.append(byte)
                if self.state not in _SECRET:
                    self._emit(bytes([byte]))
            self._after_cr = byte == 0x0D

    def _skip_escape(self, byte: int) -> None:
        # Arrow keys and friends (ESC [ ... final) are not supported by this line editor.
        if self._escape == 1 and byte == ord("["):
            self._escape = 2
        elif self._escape == 2 and not 0x40 <= byte <= 0x7E:
            return
        else:
            self._escape = 0

    def _backspace(self) -> None:
        if not self._line:
            return
        # drop a whole UTF-8 character, then erase one cell on screen
        while self._line and (self._line.pop() & 0xC0) == 0x80:
            pass
        if self.state not in _SECRET:
            self._emit(b"\b \b")

    def _enter(self) -> None:
        line = self._line.decode("utf-8", errors="replace")
        self._line.clear()
        self._emit(b"\r\n")
        getattr(self, "_on_" + self.state)(line)

    # -- states -----------------------------------------------------------------------------
    def _prompt(self, state: str) -> None:
        self.state = state
        key = {"shell": "shell_prompt"}.get(state, state)
        self.say(key)

    def _on_new_password(self, line: str) -> None:
        if not line:
            self.say("empty")
            self._prompt("new_password")
            return
        self._first_password = line
        self._prompt("confirm_password")

    def _on_confirm_password(self, line: str) -> None:
        first, self._first_password = self._first_password, ""
        if line != first:
            self.say("mismatch")
            self._prompt("new_password")
            return
        self.sandbox.set_password(line)
        self.sandbox.mark_first_boot_done()
        self.say("password_set")
        self._to_login()

    def _to_login(self) -> None:
        self.say("banner")
        self._prompt("login")

    def _on_login(self, line: str) -> None:
        self._user = line.strip()
        self._prompt("password" if self._user else "login")

    def _on_password(self, line: str) -> None:
        if self.sandbox.check_password(self._user, line):
            self._prompt("shell")
        else:
            self.say("login_incorrect")
            self._prompt("login")

    def _on_shell(self, line: str) -> None:
        command = line.strip()
        if command in ("exit", "logout"):
            self._logout()
            return
        if command:
            try:
                self.sandbox.run(command, on_output=self._tty_output)
            except OSError as exc:  # the guest is going down
                self._emit(f"-bash: {exc}\r\n".encode())
        self._prompt("shell")

    def _tty_output(self, chunk: bytes) -> None:
        self._emit(chunk.replace(b"\n", b"\r\n"))  # the tty's onlcr

    def _logout(self) -> None:
        self._emit(b"logout\r\n")
        self._to_login()
