"""task.* and event.* messages.

Tasks: ocaml/xapi/xapi_task.ml, taskHelper.ml (xapi-records.md §2.16, §3.3 "task").
Events: ocaml/xapi/xapi_event.ml ``from``, ocaml/xapi-types/event_types.ml (xapi-records.md
§2.18, xenapi.md §6.3): a batch of coalesced changes since the token, blocking until at least
one matches or the timeout passes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import XapiError
from .wire import Int32

if TYPE_CHECKING:
    from .host import SimHost


def _token(generation: int) -> str:
    # Token.to_string: "%020Ld,%020Ld"; the second part (xapi's deletion watermark) is the same
    # generation here, since the simulator keeps deletions in the same log.
    return f"{generation:020d},{generation:020d}"


class TaskEventMessages:
    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.state = host.state

    def messages(self) -> dict[str, Callable[..., Any]]:
        return {
            "task.create": self.task_create,
            "task.cancel": self.task_cancel,
            "task.destroy": self.task_destroy,
            "event.from": self.event_from,
            "event.get_current_id": lambda: self.state.generation,
        }

    # -- tasks ------------------------------------------------------------------------------
    def task_create(self, session: str, label: str, description: str) -> str:
        return self.host.create_task(str(label), str(description), session)

    def task_cancel(self, task: str) -> str:
        with self.state.lock:
            if "cancel" not in self.state.get("task", task)["allowed_operations"]:
                # TaskHelper.assert_op_valid; the reason text is UNCONFIRMED.
                raise XapiError("OPERATION_NOT_ALLOWED", "task is not cancellable")
            self.host.cancel_task(task)
        return ""

    def task_destroy(self, self_: str) -> str:
        self.host.destroy_task(self_)
        return ""

    # -- events -----------------------------------------------------------------------------
    def event_from(self, classes: Any, token: Any, timeout: Any) -> dict[str, Any]:
        if not isinstance(classes, list):
            raise XapiError("FIELD_TYPE_ERROR", "classes")
        subs = [self._subscription(str(c)) for c in classes]
        since = self._since(token)
        try:
            wait = max(0.0, float(timeout))
        except (TypeError, ValueError):
            raise XapiError("FIELD_TYPE_ERROR", "timeout") from None
        deadline = time.monotonic() + wait
        with self.state.changed:
            while True:
                events = self._collect(subs, since)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    break
                self.state.changed.wait(remaining)
            counts = {cls.lower(): Int32(len(self.state.refs(cls))) for cls in self.state.classes()}
            return {
                "events": events,
                "valid_ref_counts": counts,
                "token": _token(self.state.generation),
            }

    @staticmethod
    def _subscription(sub: str) -> tuple[str, Optional[str]]:
        # ocaml/xapi/xapi_event.ml Subscription.of_string: "*", "<class>", "<class>/<ref>"
        parts = sub.split("/", 1)
        if not parts[0] or (len(parts) == 2 and not parts[1]):
            raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", sub)
        return parts[0].lower(), parts[1] if len(parts) == 2 else None

    @staticmethod
    def _since(token: Any) -> Optional[int]:
        if token == "":
            return None
        try:
            first, second = str(token).split(",")
            int(second)
            return int(first)
        except ValueError:
            raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", str(token)) from None

    def _collect(self, subs: list[tuple[str, Optional[str]]], since: Optional[int]) -> list[Any]:
        def wanted(cls: str, ref: str) -> bool:
            return any(c in ("*", cls.lower()) and r in (None, ref) for c, r in subs)

        if since is None:
            # Token "": every existing object of the subscribed classes, as an "add".
            return [
                self._event(self.state.generation, cls, "add", ref, rec)
                for cls in self.state.classes()
                for ref, rec in self.state.all(cls).items()
                if wanted(cls, ref)
            ]
        # Coalesce per object: first and last operation in the window, newest snapshot.
        changes: dict[tuple[str, str], list[Any]] = {}
        for generation, cls, op, ref, snapshot in self.state.log:
            if generation <= since or not wanted(cls, ref):
                continue
            if (cls, ref) in changes:
                changes[(cls, ref)][1:] = [generation, op, snapshot]
            else:
                changes[(cls, ref)] = [op, generation, op, snapshot]
        events = []
        for (cls, ref), (first, generation, last, snapshot) in changes.items():
            op = "del" if last == "del" else ("add" if first == "add" else "mod")
            events.append(self._event(generation, cls, op, ref, snapshot))
        return events

    @staticmethod
    def _event(generation: int, cls: str, op: str, ref: str, snapshot: Any) -> dict[str, Any]:
        event = {"id": str(generation), "timestamp": "0.0", "class": cls.lower(),
                 "operation": op, "ref": ref}  # fmt: skip
        if op != "del":
            # xapi_event.ml from_inner: no snapshot for deletions (omitted here; UNCONFIRMED).
            event["snapshot"] = snapshot
        return event
