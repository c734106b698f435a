"""Console dialogs as data: steps of (expected text, response) driven over a vt100 stream.

The DDK's real first-boot wording is unknown (/work/shared/reference/ddk.md §2) and the
simulator varies it by version, so every pattern here is tolerant of wording and only the
order of the conversation is fixed. Matching runs on text cleaned of ANSI escapes and CRs.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import secrets
import time
from collections import deque
from typing import Callable, Optional, Protocol, Sequence, Union

from ..errors import ConsoleError
from ..secrets import Secret, redact

Answer = Union[str, Secret, Callable[["re.Match[str]"], Union[str, Secret]]]
SCREEN_LINES = 25
ENTER = "\r"  # what the Enter key sends; the guest tty's ICRNL makes it a newline

# CSI, OSC, nF (charset) and two-byte escapes: everything a vt100/xterm stream may carry.
_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]+[0-~]|[0-Z\\^-~])"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FLAGS = re.IGNORECASE | re.MULTILINE

NEW_PASSWORD = re.compile(r"(new|enter)[^\n]*password[^\n]*[:>] *$", _FLAGS)
CONFIRM_PASSWORD = re.compile(r"(re-?type|re-?enter|again|confirm|verify)[^\n]*[:>] *$", _FLAGS)
RETRY_PASSWORD = re.compile(
    r"(do not|don't|did not|didn't|does not|doesn't) match|mismatch|empty|no password", _FLAGS
)
LOGIN = re.compile(r"login: *$", _FLAGS)
PASSWORD = re.compile(r"password: *$", _FLAGS)
LOGIN_REFUSED = re.compile(r"login incorrect|authentication failure|permission denied", _FLAGS)
SHELL_PROMPT = re.compile(r"[#$] ?$", re.MULTILINE)


class ConsoleStream(Protocol):
    """A raw bidirectional terminal byte stream (CONNECT /console, or a recording in tests)."""

    def read(self, timeout: float) -> bytes:
        """Bytes that arrived within ``timeout`` (b"" if none); EOFError once closed."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Step:
    """Wait for ``expect`` (on text that arrived since the previous match), then ``send``.

    ``optional`` steps are watched together with the steps after them, up to the next required
    one; ``goto`` continues at another step (a repeat); ``fail`` makes a match an error;
    ``final`` ends the dialog; ``nudge`` is typed while nothing matches (wakes a quiet getty).
    """

    name: str
    expect: re.Pattern[str]
    send: Optional[Answer] = None
    timeout: float = 60.0
    optional: bool = False
    goto: Optional[str] = None
    fail: Optional[str] = None
    final: bool = False
    nudge: Optional[str] = None


class ConsoleReader:
    """Reads a console stream as clean text and keeps the last screen of it."""

    def __init__(self, stream: ConsoleStream, on_text: Optional[Callable[[str], None]] = None):
        self.stream, self._on_text = stream, on_text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._carry = ""
        self._lines: deque[str] = deque([""], maxlen=SCREEN_LINES)
        self.transcript: list[str] = []

    def read(self, timeout: float) -> str:
        """New clean text (maybe ""); EOFError when the console closed."""
        raw = self._carry + self._decoder.decode(self.stream.read(timeout))
        self._carry = ""
        esc = raw.rfind("\x1b")
        if esc >= 0 and len(raw) - esc < 64 and not _ESCAPE.match(raw, esc):
            raw, self._carry = raw[:esc], raw[esc:]  # a sequence cut by the read: finish later
        text = clean(raw)
        if text:
            first, *rest = text.split("\n")
            self._lines[-1] += first
            self._lines.extend(rest)
            self.transcript.append(text)
            if self._on_text:
                self._on_text(redact(text))
        return text

    def write(self, answer: Union[str, Secret]) -> None:
        value = answer.reveal() if isinstance(answer, Secret) else answer
        self.stream.write((value + ENTER).encode())

    @property
    def screen(self) -> str:
        return redact("\n".join(self._lines))


def clean(text: str) -> str:
    """``text`` without ANSI escape sequences, CRs and other control characters."""
    return _CONTROL.sub("", _ESCAPE.sub("", text))


def run_dialog(
    stream: ConsoleStream,
    steps: Sequence[Step],
    on_text: Optional[Callable[[str], None]] = None,
    nudge_every: float = 5.0,
    reader: Optional[ConsoleReader] = None,
) -> str:
    """Drive ``steps`` over ``stream``; returns the transcript (secrets redacted)."""
    reader = reader or ConsoleReader(stream, on_text)
    index = {step.name: i for i, step in enumerate(steps)}
    position, pending = 0, ""
    while position < len(steps):
        watched = _watched(steps, position)
        waiting = watched[-1].timeout  # optional steps wait as long as the required one
        started = last_nudge = time.monotonic()
        while True:
            hit = _latest_match(watched, pending)
            if hit:
                break
            now = time.monotonic()
            if now - started > waiting:
                raise _stuck(watched[-1], f"waited {waiting:g} s for {_describe(watched)}", reader)
            nudge = next((s.nudge for s in watched if s.nudge), None)
            if nudge is not None and now - last_nudge > nudge_every:
                reader.write(nudge.rstrip(ENTER))
                last_nudge = now
            try:
                wait = min(0.5, nudge_every if nudge else 0.5, waiting - (now - started))
                pending += reader.read(max(0.01, wait))
            except EOFError:
                raise _stuck(watched[-1], "the console closed (did the VM stop?)", reader) from None
        step, match = hit
        pending = pending[match.end() :]
        if step.fail:
            raise _stuck(step, step.fail, reader)
        if step.send is not None:
            answer = step.send(match) if callable(step.send) else step.send
            reader.write(answer)
        if step.final:
            break
        position = index[step.goto] if step.goto else steps.index(step) + 1
    return redact("".join(reader.transcript))


def _watched(steps: Sequence[Step], position: int) -> list[Step]:
    """The step at ``position`` plus, while they are optional, the ones after it."""
    watched = [steps[position]]
    while watched[-1].optional and position + len(watched) < len(steps):
        watched.append(steps[position + len(watched)])
    return watched


def _latest_match(watched: list[Step], text: str) -> Optional[tuple[Step, re.Match[str]]]:
    """The watched step whose last match starts latest: the bottom of the screen is the present
    (a console replays its old screen on connect, with prompts long answered)."""
    best: Optional[tuple[Step, re.Match[str]]] = None
    for step in watched:
        matches = list(step.expect.finditer(text))
        last = matches[-1] if matches else None
        if last is not None and (best is None or last.start() > best[1].start()):
            best = (step, last)
    return best


def _describe(watched: list[Step]) -> str:
    return " or ".join(f"{s.name} /{s.expect.pattern}/" for s in watched)


def _stuck(step: Step, why: str, reader: ConsoleReader) -> ConsoleError:
    return ConsoleError(
        f"The console dialog failed at step '{step.name}': {why}. Last screen:\n{reader.screen}",
        "Look at the VM's console (XenCenter, or `xe console`); if the DDK words this prompt "
        "differently, report the screen above.",
    )


def _login_steps(password: Secret, refused: str, timeout: float, boot_timeout: float) -> list[Step]:
    return [
        Step("login prompt", LOGIN, "root", timeout=boot_timeout, nudge=ENTER),
        Step("password prompt", PASSWORD, password, timeout=timeout),
        Step("login refused", LOGIN_REFUSED, optional=True, fail=refused),
        Step("shell prompt", SHELL_PROMPT, timeout=timeout, final=True),
    ]


def first_boot_dialog(
    password: Secret, timeout: float = 60.0, boot_timeout: float = 600.0
) -> list[Step]:
    """Set the root password at the DDK's first-boot prompts, then log in as root."""
    return [
        Step("new root password prompt", NEW_PASSWORD, password, timeout=boot_timeout),
        Step("confirm root password prompt", CONFIRM_PASSWORD, password, timeout=timeout),
        Step(
            "passwords did not match",
            RETRY_PASSWORD,
            optional=True,
            goto="new root password prompt",
        ),
        *_login_steps(
            password,
            "the password just set was refused at login; the DDK may not have accepted it",
            timeout,
            boot_timeout,
        ),
    ]


def login_dialog(
    password: Secret, timeout: float = 60.0, boot_timeout: float = 600.0
) -> list[Step]:
    """Log in as root on a DDK that asks nothing at boot (noninteractive, or a golden image)."""
    return [
        Step("already logged in", SHELL_PROMPT, optional=True, final=True),
        *_login_steps(
            password,
            "the DDK refused the root password (a golden image keeps the password it was "
            "made with)",
            timeout,
            boot_timeout,
        ),
    ]


def shell_command(
    stream: ConsoleStream,
    command: str,
    timeout: float = 30.0,
    reader: Optional[ConsoleReader] = None,
) -> str:
    """Run one command at a logged-in shell prompt; returns its output (CR-free, unescaped)."""
    reader = reader or ConsoleReader(stream)
    token = secrets.token_hex(6)
    begin, end = f"xsddkvm-{token}-begin", f"xsddkvm-{token}-end"
    # The quotes split each marker in the echoed command line, so only the output matches.
    reader.write(f"echo xsddkvm-''{token}-begin; {command}; echo xsddkvm-''{token}-end")
    found = re.compile(rf"^{begin}\n(.*?)^{end}$", re.DOTALL | re.MULTILINE)
    text, deadline = "", time.monotonic() + timeout
    while not (match := found.search(text)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _stuck(Step("shell command", found), f"`{command}` gave no output", reader)
        try:
            text += reader.read(min(0.5, left))
        except EOFError:
            raise _stuck(Step("shell command", found), "the console closed", reader) from None
    return match.group(1).rstrip("\n")


# XSDDKVM_SIM_ROOT is unset on a real DDK, and the simulated guest's root in the simulator.
HOST_KEY_COMMAND = 'cat "${XSDDKVM_SIM_ROOT:-}/etc/ssh/ssh_host_rsa_key.pub"'
# hostname -I is missing on old net-tools and ip on minimal guests: try each in turn.
IP_COMMAND = (
    "hostname -I 2>/dev/null || ip -4 -o addr show 2>/dev/null || "
    "/sbin/ip -4 -o addr show 2>/dev/null || /sbin/ifconfig 2>/dev/null"
)


def read_host_key(stream: ConsoleStream, timeout: float = 30.0) -> str:
    """The guest's RSA host public key line (``ssh-rsa AAAA...``), to pin the SSH connection."""
    output = shell_command(stream, HOST_KEY_COMMAND, timeout)
    match = re.search(r"^ssh-rsa AAAA[0-9A-Za-z+/]+=*", output, re.MULTILINE)
    if not match:
        raise ConsoleError(
            f"The guest has no readable RSA SSH host key ({HOST_KEY_COMMAND} printed "
            f"{output[:200]!r}).",
            "sshd may not have started yet in the DDK; retry once it has booted.",
        )
    return match.group(0)


def read_ipv4(stream: ConsoleStream, timeout: float = 30.0) -> list[str]:
    """The guest's IPv4 addresses in the order it lists them, without 127.0.0.1."""
    output = shell_command(stream, IP_COMMAND, timeout)
    inet = re.findall(r"inet (?:addr:)?(\d{1,3}(?:\.\d{1,3}){3})", output)
    found = inet or re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", output)
    return [ip for ip in dict.fromkeys(found) if ip != "127.0.0.1"]
