"""A type for secrets: it never prints its value, and only a transport unwraps it."""

from __future__ import annotations

import secrets as _random
import string
import threading

_known: set[str] = set()
_lock = threading.Lock()
# Shorter values are not registered for redaction: replacing every "ab" in every message
# would destroy the text and hide nothing (such a password is guessable anyway).
MIN_REDACTED_LENGTH = 4


class Secret:
    """A password or key passphrase. ``str()``, ``repr()`` and f-strings show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= MIN_REDACTED_LENGTH:
            with _lock:
                _known.add(value)

    def reveal(self) -> str:
        """The clear value; call only where it is written to a channel or an API parameter."""
        return self._value

    def __str__(self) -> str:
        return "***"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def generate_password(length: int = 24) -> Secret:
    """A random password of letters and digits (no shell or dialog metacharacters)."""
    alphabet = string.ascii_letters + string.digits
    return Secret("".join(_random.choice(alphabet) for _ in range(length)))


def redact(text: str) -> str:
    """Replace every secret value this process has seen with ``***``."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        text = text.replace(value, "***")
    return text
