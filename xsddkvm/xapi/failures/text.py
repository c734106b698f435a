"""What an explanation is, and how its text is filled in and scrubbed of secrets."""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

from ...errors import XsddkvmError
from ...secrets import redact

_MAX_PARAM_CHARS = 160  # keeps a paragraph readable when the host sends a whole log as a param


@dataclasses.dataclass(frozen=True)
class Explanation:
    """What one failure means. Templates use ``{param}`` names, ``{host}`` and ``{action}``."""

    code: str
    params: tuple[str, ...]
    error: type[XsddkvmError]
    what: str
    cause: str
    hint: str


_SESSION_ID = re.compile(r"([?&;]?)session_id=[^&;\s'\"#]*(&?)")
_USERINFO = re.compile(r"(?<=//)([^/@\s:]*):[^/@\s]*@")


def scrub(text: str) -> str:
    """``text`` without known secrets, ``session_id=`` parameters or URL passwords."""
    text = _SESSION_ID.sub(lambda m: m.group(1) if m.group(2) else "", text)
    return redact(_USERINFO.sub(r"\1@", text))


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""  # a parameter the host did not send: _fill tidies the gap


def fill(template: str, values: Mapping[str, str]) -> str:
    text = template.format_map(_Values(values))
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([.,:;)])", r"\1", text).strip()


def param_text(value: str) -> str:
    text = " ".join(scrub(value).split())
    return text if len(text) <= _MAX_PARAM_CHARS else text[: _MAX_PARAM_CHARS - 3] + "..."


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
