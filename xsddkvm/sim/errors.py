"""XenAPI failures as the simulator raises them: the real wire codes and parameter layouts.

Sources: xapi-project/xen-api ocaml/xapi-consts/api_errors.ml (codes),
ocaml/idl/datamodel_errors.ml (declared params) and the raise sites cited per helper.
"""

from __future__ import annotations


class XapiError(Exception):
    """A XenAPI Failure: ``ErrorDescription = [code, *params]`` on the wire."""

    def __init__(self, code: str, *params: object) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]


def handle_invalid(cls: str, ref: str) -> XapiError:
    # ocaml/xapi/exnHelper.ml: (handle_invalid, [tblname; reference])
    return XapiError("HANDLE_INVALID", cls, ref)


def uuid_invalid(cls: str, uuid: str) -> XapiError:
    return XapiError("UUID_INVALID", cls, uuid)


def bad_power_state(vm_ref: str, expected: list[str], actual: str) -> XapiError:
    # ocaml/xapi/xapi_vm_lifecycle.ml report_power_state_error: lowercase, ", "-joined
    return XapiError("VM_BAD_POWER_STATE", vm_ref, ", ".join(expected), actual.lower())
