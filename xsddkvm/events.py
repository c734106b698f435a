"""Typed events that library code emits and front ends render (terminal, JSON lines, tests)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

from .secrets import redact


@dataclasses.dataclass(frozen=True)
class Event:
    """Base class; ``kind`` names the event in JSON output."""

    def to_dict(self) -> dict[str, Any]:
        data = {"event": type(self).kind(), "time": round(time.time(), 3)}
        for key, value in dataclasses.asdict(self).items():
            data[key] = redact(value) if isinstance(value, str) else value
        return data

    @classmethod
    def kind(cls) -> str:
        name = cls.__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@dataclasses.dataclass(frozen=True)
class StageStarted(Event):
    stage: str
    description: str = ""


@dataclasses.dataclass(frozen=True)
class StageFinished(Event):
    stage: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class StageUndone(Event):
    stage: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Progress(Event):
    """Bytes (or items) done out of total for a transfer; total 0 means unknown."""

    what: str
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class Waiting(Event):
    """A wait in progress (boot, IP, SSH), with the seconds elapsed so far."""

    what: str
    elapsed: float


@dataclasses.dataclass(frozen=True)
class LogLine(Event):
    source: str
    line: str


@dataclasses.dataclass(frozen=True)
class ArtifactFetched(Event):
    path: str
    size: int
    md5: str
    verified: bool


@dataclasses.dataclass(frozen=True)
class Notice(Event):
    """Something the user should read: level is info, warning or success."""

    message: str
    level: str = "info"


@dataclasses.dataclass(frozen=True)
class ObjectCreated(Event):
    cls: str
    ref: str
    name: str = ""


@dataclasses.dataclass(frozen=True)
class ObjectRemoved(Event):
    cls: str
    ref: str


@dataclasses.dataclass(frozen=True)
class Result(Event):
    """The final record of a command (what --json consumers read last)."""

    command: str
    ok: bool
    data: Optional[dict[str, Any]] = None


EventSink = Callable[[Event], None]


def discard(_event: Event) -> None:
    """An EventSink that drops everything."""


class Recorder:
    """An EventSink that keeps events in a list (for tests and summaries)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]
