"""Waiting for XenAPI tasks, and reading their XML-RPC-encoded results."""

from __future__ import annotations

import xmlrpc.client
from typing import Any, Callable, Optional

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from ..errors import HostAPIError
from . import failures
from .session import XapiSession


def parse_result(text: str) -> Any:
    """A task ``result`` is the XML-RPC text of the return value (xenapi.md §2.3)."""
    if not text.strip():
        return ""
    wrapped = f"<methodResponse><params><param>{text}</param></params></methodResponse>"
    (value,), _ = xmlrpc.client.loads(wrapped)
    return value


def wait_for_task(
    xs: XapiSession,
    task: str,
    *,
    action: str,
    timeout: float,
    on_progress: Optional[Callable[[float], None]] = None,
) -> Any:
    """Poll ``task`` until it leaves ``pending``; return its parsed result or raise its error."""

    def status() -> str:
        with xs.doing(action):
            if on_progress is not None:
                on_progress(float(xs.api.task.get_progress(task)))
            return str(xs.api.task.get_status(task))

    final = Retrying(
        retry=retry_if_result(lambda s: s in ("pending", "cancelling")),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        stop=stop_after_delay(timeout),
        retry_error_callback=lambda _state: "timed-out",
    )(status)
    if final == "timed-out":
        raise HostAPIError(
            f"{action.capitalize()} on {xs.host_label} did not finish within {timeout:.0f} s.",
            "Raise the matching timeouts.* value in the playbook if the host is just slow, or "
            "check the host's load in XenCenter.",
        )
    with xs.doing(action):
        if final == "success":
            return parse_result(str(xs.api.task.get_result(task)))
        details = [str(d) for d in xs.api.task.get_error_info(task)] or ["TASK_CANCELLED", task]
    raise failures.explain_failure(details, host=xs.host_label, action=action)


def destroy_task(xs: XapiSession, task: str) -> None:
    """Best-effort removal of a task we created (tasks must be destroyed by their creator)."""
    try:
        with xs.doing("removing a finished task"):
            xs.api.task.destroy(task)
    except Exception:  # noqa: BLE001 - cleanup must not mask the original outcome
        pass
