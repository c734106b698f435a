"""XenAPI dispatch: method lookup, arity and session checks, Async.* tasks, session messages.

Order of checks follows xapi's generated server (ocaml/idl/ocaml_backend/gen_server.ml,
ocaml/xapi/server_helpers.ml): unknown method -> MESSAGE_METHOD_UNKNOWN [method]; wrong arity
-> MESSAGE_PARAMETER_COUNT_MISMATCH [method; expected; received] (excluding the session);
then the session (SESSION_INVALID / HOST_IS_SLAVE); then the message itself.
"""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import wire
from .api_control import ControlMessages
from .api_devices import DeviceMessages
from .api_generic import CLASSES, generic_message
from .api_tasks import TaskEventMessages
from .api_updates import UpdateMessages
from .api_vm import VmMessages
from .errors import XapiError

if TYPE_CHECKING:
    from .host import SimHost

ASYNC_PREFIX = "Async."
# Explicit messages without a session parameter.
_NO_SESSION = {"session.login_with_password"}
# Explicit messages that have no Async form (getters and lookups).
_SYNC_ONLY = {"event.from", "event.get_current_id", "VM.get_allowed_VIF_devices",
              "VM.get_allowed_VBD_devices", "host.get_management_interface"}  # fmt: skip


@dataclass(frozen=True)
class Message:
    """One wire message: its implementation and how it is called."""

    fn: Callable[..., Any]
    session: bool = True
    async_ok: bool = False

    def arity(self) -> tuple[int, int]:
        """(required, total) wire parameters, the session excluded."""
        params = list(inspect.signature(self.fn).parameters.values())
        if params and params[0].name == "session":
            params = params[1:]
        required = sum(1 for p in params if p.default is inspect.Parameter.empty)
        return required, len(params)

    def wants_session(self) -> bool:
        params = list(inspect.signature(self.fn).parameters)
        return bool(params) and params[0] == "session"


class Api:
    """Serves XenAPI messages for one ``SimHost``."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.state = host.state
        explicit: dict[str, Callable[..., Any]] = {
            "session.login_with_password": self.login_with_password,
            "session.logout": self.logout,
            "host.get_management_interface": self.get_management_interface,
        }
        for group in (VmMessages(host), DeviceMessages(host), TaskEventMessages(host),
                      UpdateMessages(host), ControlMessages(host)):  # fmt: skip
            explicit.update(group.messages())
        self.explicit = {
            name: Message(
                fn,
                session=name not in _NO_SESSION,
                async_ok=name not in _SYNC_ONLY and not name.startswith("session."),
            )
            for name, fn in explicit.items()
        }

    def dispatch(self, method: str, params: list[Any], peer_address: str) -> Any:
        """Run ``method``; ``peer_address`` is the host address the call arrived on (the
        listening address), which decides HOST_IS_SLAVE. Raises ``XapiError``."""
        delay = self.host.scenario.faults.api_delay_seconds
        if delay:
            time.sleep(delay)
        is_async = method.startswith(ASYNC_PREFIX)
        name = method[len(ASYNC_PREFIX) :] if is_async else method
        message = self.lookup(name)
        if message is None:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", method)
        if is_async and not message.async_ok:
            # server_helpers.ml do_dispatch: API.response_of_fault
            raise XapiError("Fault", f"No async mode for this operation (rpc: {method})")
        required, total = message.arity()
        received = len(params) - (1 if message.session else 0)
        if not required <= received <= total:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, total, max(received, 0))
        self.host.assert_master(peer_address)
        args = list(params)
        session: Optional[str] = None
        if message.session:
            session = self.host.check_session(_ref_text(args.pop(0)))
        if message.wants_session():
            args.insert(0, session)
        if is_async:
            return self._launch(method, message.fn, args, session)
        return message.fn(*args)

    def lookup(self, name: str) -> Optional[Message]:
        if name in self.explicit:
            return self.explicit[name]
        cls, _, msg = name.partition(".")
        if cls not in CLASSES or not msg:
            return None
        fn = generic_message(self.state, cls, msg)
        if fn is None:
            return None
        return Message(fn)  # generated getters/setters have no Async form

    def list_methods(self) -> list[str]:
        """Explicit messages plus every class's record getters (for system.listMethods)."""
        names = set(self.explicit)
        for cls in CLASSES:
            names.update(f"{cls}.{m}" for m in ("get_record", "get_by_uuid", "get_all"))
        return sorted(names)

    def _launch(
        self, method: str, fn: Callable[..., Any], args: list[Any], session: Optional[str]
    ) -> str:
        """Start ``fn`` in a thread under a new task named ``method``; return the task ref."""
        task = self.host.create_task(method, "", session)

        def run() -> None:
            try:
                result = fn(*args)
            except XapiError as exc:
                self.host.fail_task(task, exc)
            except Exception as exc:  # a simulator bug: report it as xapi would (exnHelper.ml)
                self.host.fail_task(task, XapiError("INTERNAL_ERROR", repr(exc)))
            else:
                self.host.complete_task(task, wire.value(result))

        threading.Thread(target=run, name=f"sim-{method}", daemon=True).start()
        return task

    # -- messages that need the dispatcher's context ----------------------------------------
    def login_with_password(
        self, uname: Any, pwd: Any, version: Any = "1.1", originator: Any = ""
    ) -> str:
        return self.host.login(str(uname), str(pwd), str(originator))

    def logout(self, session: str) -> str:
        self.host.logout(session)
        return ""

    def get_management_interface(self, host: str) -> str:
        pif = self.state.first("PIF", lambda p: p["host"] == host and p["management"])
        self.state.get("host", host)
        return pif or ""


def _ref_text(value: Any) -> str:
    return "" if value is None else str(value)
