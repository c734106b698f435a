"""XenAPI failure codes and socket/HTTP/TLS failures, explained in the user's terms.

Two data tables (``FAILURES`` by XenAPI code, ``TRANSPORT`` by kind of connection failure) say
what happened, the likely cause and what to run next; ``explain_failure`` and
``explain_transport`` build the error, ``render_markdown`` renders docs/troubleshooting.md.
"""

from .docs import render_markdown
from .text import Explanation, scrub
from .transport import TRANSPORT, explain_transport
from .xapi_codes import FAILURES, explain_failure, lookup

__all__ = [
    "FAILURES",
    "TRANSPORT",
    "Explanation",
    "explain_failure",
    "explain_transport",
    "lookup",
    "render_markdown",
    "scrub",
]
