"""Simulator-only messages in the ``sim.`` namespace: look inside a running host, hotfix it.

A real host has no such calls; they let a test or ``xsddkvm sim inspect|hotfix`` drive a
simulator in another process over the same XML-RPC wire, authenticated by a normal session.
Failures use xapi's generic codes (``INVALID_VALUE [field; value]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .errors import XapiError

if TYPE_CHECKING:
    from .host import SimHost

# Keys of the ``sim.hotfix`` struct -> ``SimHost.apply_hotfix`` keyword arguments.
HOTFIX_FIELDS = {"build_number": "build_number", "linux": "linux", "update": "update_name"}


class ControlMessages:
    """``sim.inspect`` and ``sim.hotfix`` for one ``SimHost``."""

    def __init__(self, host: SimHost) -> None:
        self.host = host

    def messages(self) -> dict[str, Callable[..., Any]]:
        return {"sim.inspect": self.inspect, "sim.hotfix": self.hotfix}

    def inspect(self, session: str) -> dict[str, list[dict[str, Any]]]:
        """Objects created since seeding, per class; the caller's own session is left out."""
        found = self.host.inspect()
        found["session"] = [s for s in found.get("session", []) if s["ref"] != session]
        return found

    def hotfix(self, changes: Any) -> str:
        """Apply a hotfix: ``{build_number?, linux?, update?}``; returns the pool_update ref."""
        if not isinstance(changes, dict):
            raise XapiError("INVALID_VALUE", "changes", repr(changes))
        kwargs: dict[str, str] = {}
        for key, value in changes.items():
            if key not in HOTFIX_FIELDS:
                raise XapiError("INVALID_VALUE", key, str(value))
            if not isinstance(value, str) or not value:
                raise XapiError("INVALID_VALUE", key, repr(value))
            kwargs[HOTFIX_FIELDS[key]] = value
        return self.host.apply_hotfix(**kwargs)
