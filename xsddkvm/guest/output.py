"""A running command's output: lines per stream, prompt answering, unanswered-prompt detection."""

from __future__ import annotations

import codecs
import dataclasses
import re
import time
from typing import Callable, Optional, Sequence, Union

from ..secrets import Secret

# A line that ends in ':' or '?' with no newline after it looks like a question to a human.
PROMPT = re.compile(r"[:?] *$")
WINDOW_CHARS = 4096


@dataclasses.dataclass(frozen=True)
class Responder:
    """Answer a prompt: when ``pattern`` shows up in the output, write ``answer`` + newline."""

    pattern: re.Pattern[str]
    answer: Union[Secret, str]


class LineSplitter:
    """Turns one stream's bytes into lines; keeps the unterminated last line in ``partial``."""

    def __init__(self, name: str, emit: Callable[[str, str], None]) -> None:
        self.name, self._emit = name, emit
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.partial = ""

    def feed(self, data: bytes) -> str:
        """Emit the complete lines in ``data``; returns the decoded text."""
        text = self._decoder.decode(data)
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self._emit(self.name, line.rstrip("\r"))
        return text

    def flush(self) -> None:
        """Emit the unterminated line now (a prompt is waiting, or the stream ended)."""
        if self.partial:
            line, self.partial = self.partial, ""
            self._emit(self.name, line.rstrip("\r"))


class PromptWatch:
    """Answers prompts with responders and notices a prompt that nothing answers."""

    def __init__(self, responders: Sequence[Responder], send: Callable[[bytes], None]) -> None:
        self._responders, self._send = responders, send
        self._windows: dict[str, str] = {}
        self._last: Optional[LineSplitter] = None
        self._last_time = time.monotonic()

    def seen(self, splitter: LineSplitter, text: str) -> None:
        """New ``text`` arrived on ``splitter``'s stream: answer every responder that matches."""
        self._last, self._last_time = splitter, time.monotonic()
        window = (self._windows.get(splitter.name, "") + text)[-WINDOW_CHARS:]
        answered = True
        while answered:
            answered = False
            for responder in self._responders:
                match = responder.pattern.search(window)
                if match:
                    answer = responder.answer
                    value = answer.reveal() if isinstance(answer, Secret) else answer
                    self._send((value + "\n").encode())
                    window, answered = window[match.end() :], True
                    splitter.flush()
        self._windows[splitter.name] = window

    def unanswered(self, prompt_timeout: float) -> Optional[str]:
        """The prompt text if the output has ended in one for ``prompt_timeout`` seconds."""
        last = self._last
        if last is None or not PROMPT.search(last.partial):
            return None
        if time.monotonic() - self._last_time < prompt_timeout:
            return None
        prompt = last.partial.strip()
        last.flush()
        return prompt
