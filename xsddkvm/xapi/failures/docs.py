"""docs/troubleshooting.md, rendered from the two tables so that they cannot drift."""

from __future__ import annotations

from .text import Explanation, capitalize, fill
from .transport import TRANSPORT
from .xapi_codes import _SR_BACKEND, _TABLE

_INTRO = """\
# Troubleshooting

Every error xsddkvm prints is one paragraph: what happened, the likely cause, and what to do
next. This page lists them all. It is the output of `render_markdown()` in
`xsddkvm/xapi/failures/`, and a test keeps the two identical: edit the tables there and
regenerate the page (the test's failure message gives the command).

Words in CAPITALS stand for values filled in from the failure: HOST is the host from
`host.url`, the other names are parameters the host sent with the error.
"""


def render_markdown() -> str:
    """docs/troubleshooting.md: every table entry as code, meaning and what to do."""
    lines = [_INTRO, "## Errors reported by the XenServer host", ""]
    lines += ["| Code | Error (exit code) | What it means | What to do |", "|---|---|---|---|"]
    for entry in _TABLE:
        code = entry.code + ("_<n>" if entry.code == _SR_BACKEND else "")
        params = f" ({', '.join(p.upper() for p in entry.params)})" if entry.params else ""
        lines.append(_row(f"`{code}`{params}", entry))
    lines += ["", "## Connection problems", ""]
    lines += ["| Failure | Error (exit code) | What it means | What to do |", "|---|---|---|---|"]
    for entry in TRANSPORT.values():
        lines.append(_row(entry.code, entry))
    return "\n".join(lines) + "\n"


def _row(first: str, entry: Explanation) -> str:
    names = {p: p.upper() for p in (*entry.params, "host", "url", "hostname", "port", "type")}
    names.update(detail="DETAIL", status="STATUS", reason="REASON")
    meaning = capitalize(fill(f"{entry.what} {entry.cause}", names))
    hint = fill(entry.hint, names)
    kind = f"{entry.error.kind} ({int(entry.error.exit_code)})"
    cells = [first, kind, meaning, hint]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
