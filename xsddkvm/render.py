"""Front ends for events: a terminal view (progress bars, live log) and JSON lines."""

from __future__ import annotations

import json
import time
from typing import IO, Optional

from .events import (
    ArtifactFetched,
    Event,
    LogLine,
    Notice,
    ObjectCreated,
    ObjectRemoved,
    Progress,
    Result,
    StageFinished,
    StageStarted,
    StageUndone,
    Waiting,
)
from .secrets import redact


class JsonRenderer:
    """One JSON object per line; nothing else is written to stdout."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_dict(), default=str) + "\n")
        self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class TerminalRenderer:
    """Stage lines, a progress bar with rate and ETA, a spinner on waits, the live build log.

    On a terminal the bar redraws in place; otherwise no control codes are written and
    progress is reported only at stage ends.
    """

    SPINNER = "|/-\\"

    def __init__(self, stream: IO[str], tty: Optional[bool] = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._progress_started: dict[str, tuple[float, int]] = {}
        self._line_open = False
        self._spin = 0
        self._last_draw = 0.0

    def _write(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\r\x1b[K")
            self._line_open = False
        self.stream.write(redact(text) + "\n")
        self.stream.flush()

    def _draw(self, text: str) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._line_open = True

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self._write(f"==> {event.stage}: {event.description}")
        elif isinstance(event, StageFinished):
            self._write(f"    {event.stage} done in {event.seconds:.1f} s")
        elif isinstance(event, StageUndone):
            self._write(f"<== undone: {event.stage}")
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Waiting):
            self._spin = (self._spin + 1) % len(self.SPINNER)
            self._draw(
                f"    {self.SPINNER[self._spin]} waiting for {event.what}: {event.elapsed:.0f} s"
            )
        elif isinstance(event, LogLine):
            self._write(f"    | {event.line}")
        elif isinstance(event, ArtifactFetched):
            status = "md5 verified" if event.verified else "fetched"
            self._write(f"    {event.path} ({_size(event.size)}, {status})")
        elif isinstance(event, Notice):
            prefix = {"warning": "WARNING: ", "success": ""}.get(event.level, "")
            self._write(f"{prefix}{event.message}")
        elif isinstance(event, (ObjectCreated, ObjectRemoved)):
            verb = "created" if isinstance(event, ObjectCreated) else "removed"
            self._write(f"    {verb} {event.cls} {event.ref}")
        elif isinstance(event, Result):
            self._write("" if not event.ok else f"{event.command}: success")

    def _progress(self, event: Progress) -> None:
        # The first event arrives after the first block: rates count from there.
        started, base = self._progress_started.setdefault(
            event.what, (time.monotonic(), event.done)
        )
        elapsed = time.monotonic() - started
        rate = (event.done - base) / elapsed if elapsed > 0.2 else None
        speed = f" {_size(rate)}/s" if rate else ""
        if event.total:
            fraction = min(event.done / event.total, 1.0)
            eta = f" ETA {(event.total - event.done) / rate:.0f} s" if rate else ""
            bar = "#" * int(fraction * 30)
            self._draw(
                f"    {event.what} [{bar:<30}] {fraction * 100:5.1f}% "
                f"{_size(event.done)}/{_size(event.total)}{speed}{eta}"
            )
            if event.done >= event.total:
                self._write(f"    {event.what}: {_size(event.total)} in {elapsed:.1f} s{speed}")
                self._progress_started.pop(event.what, None)
        else:
            self._draw(f"    {event.what}: {_size(event.done)}{speed}")
