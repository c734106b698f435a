"""Messages xapi generates for every class: getters, setters, map/set edits, lookups, where.

Source: ocaml/idl/datamodel_utils.ml ``messages_of_obj`` / ``new_messages_of_field``
(xapi-records.md §3.1). Parameter types are coerced the way ocaml-rpc does on input
(mirage/ocaml-rpc src/lib/rpc.ml): ints from Int or String, bools only from Bool.
"""

from __future__ import annotations

import copy
import xmlrpc.client
from typing import Any, Callable, Optional

from . import records
from .api_where import compile_where, db_column
from .errors import XapiError, handle_invalid
from .state import NULL_REF, SimState

CLASSES = (
    "pool", "host", "SR", "PBD", "network", "PIF", "VM", "VBD", "VDI", "VIF", "VM_guest_metrics",
    "VM_metrics", "console", "task", "pool_update", "host_metrics", "session",
 "host_patch",)  # fmt: skip
# Classes with the ``name`` namespace get ``get_by_name_label`` (datamodel_utils.ml).
NAME_CLASSES = {"host", "SR", "VDI", "VM", "network", "task", "pool_update", "host_patch"}

# RW fields (generated set_/add_to_/remove_from_) plus simple explicit setters.
SETTABLE: dict[str, set[str]] = {
    "VM": {
        "name_label", "name_description", "user_version", "affinity", "VCPUs_params",
        "actions_after_softreboot", "actions_after_shutdown", "actions_after_reboot",
        "actions_after_crash", "PV_bootloader", "PV_kernel", "PV_ramdisk", "PV_args",
        "PV_bootloader_args", "PV_legacy_args", "HVM_boot_policy", "HVM_boot_params",
        "HVM_shadow_multiplier", "platform", "PCI_bus", "other_config", "recommendations",
        "xenstore_data", "tags", "blocked_operations", "suspend_SR",
        "hardware_platform_version", "domain_type", "ha_restart_priority", "ha_always_run",
        "start_delay", "shutdown_delay", "order", "suspend_VDI",
    },
    "VDI": {
        "name_label", "name_description", "other_config", "xenstore_data", "sm_config", "tags",
        "read_only", "sharable", "on_boot", "allow_caching",
    },
    "VBD": {
        "userdevice", "bootable", "mode", "type", "unpluggable", "other_config",
        "qos_algorithm_type", "qos_algorithm_params",
    },
    "VIF": {
        "other_config", "qos_algorithm_type", "qos_algorithm_params", "locking_mode",
        "ipv4_allowed", "ipv6_allowed",
    },
    "network": {"name_label", "name_description", "MTU", "other_config", "tags",
                "default_locking_mode"},
    "SR": {"name_label", "name_description", "other_config", "tags", "sm_config", "shared"},
    "PBD": {"other_config", "device_config"},
    "host": {
        "name_label", "name_description", "other_config", "hostname", "address", "logging",
        "tags", "license_server", "guest_VCPUs_params", "display", "suspend_image_sr",
        "crash_dump_sr",
    },
    "pool": {
        "name_label", "name_description", "default_SR", "suspend_image_SR", "crash_dump_SR",
        "other_config", "tags", "gui_config", "health_check_config", "ha_allow_overcommit",
        "wlb_enabled", "wlb_verify_cert", "policy_no_vendor_device", "live_patching_disabled",
        "is_psr_pending", "migration_compression", "coordinator_bias",
    },
    "task": {"status", "progress", "result", "error_info", "resident_on", "other_config"},
}  # fmt: skip
# Ref-valued settable fields and the class they point at (checked for HANDLE_INVALID).
REF_TARGETS = {
    "default_SR": "SR", "suspend_image_SR": "SR", "crash_dump_SR": "SR", "suspend_SR": "SR",
    "suspend_image_sr": "SR", "crash_dump_sr": "SR", "affinity": "host", "resident_on": "host",
    "suspend_VDI": "VDI",
}  # fmt: skip

_DEFAULTS: dict[str, dict[str, Any]] = {}


def fields_of(cls: str) -> dict[str, Any]:
    """The default record of ``cls`` (cached; used for field names and types only)."""
    if cls not in _DEFAULTS:
        _DEFAULTS[cls] = records.defaults(cls)
    return _DEFAULTS[cls]


def settable(cls: str, field: str) -> bool:
    return field in SETTABLE.get(cls, {"other_config"})


def coerce(cls: str, field: str, value: Any) -> Any:
    """``value`` as the type of ``cls.field``; FIELD_TYPE_ERROR [field] when it cannot be."""
    default = fields_of(cls).get(field)
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
        elif isinstance(default, int):
            if not isinstance(value, bool):
                return int(value)
        elif isinstance(default, float):
            if not isinstance(value, bool):
                return float(value)
        elif isinstance(default, str):
            if isinstance(value, str):
                return value
        elif isinstance(default, dict):
            if isinstance(value, dict):
                return {str(k): v if isinstance(v, list) else str(v) for k, v in value.items()}
        elif isinstance(default, list):
            if isinstance(value, list):
                return list(value)
        elif isinstance(default, xmlrpc.client.DateTime):
            if isinstance(value, xmlrpc.client.DateTime):
                return value
        else:
            return value
    except (TypeError, ValueError):
        pass
    raise XapiError("FIELD_TYPE_ERROR", field)


def as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise XapiError("FIELD_TYPE_ERROR", name)
    return value


def as_int(name: str, value: Any) -> int:
    try:
        if not isinstance(value, bool):
            return int(value)
    except (TypeError, ValueError):
        pass
    raise XapiError("FIELD_TYPE_ERROR", name)


def check_ref(state: SimState, cls: str, ref: Any) -> str:
    """``ref`` if it names a live ``cls`` object, else HANDLE_INVALID [cls, ref]."""
    if not isinstance(ref, str) or not state.exists(cls, ref):
        raise handle_invalid(cls, str(ref))
    return ref


def construct(
    cls: str, record: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields a ``<cls>.create(record)`` call sets; extra members are ignored.

    ocaml/idl/ocaml_backend/gen_server.ml from_ctor_record: a missing field without a default
    is Dispatcher_FieldNotFound, reported as INTERNAL_ERROR (exact text UNCONFIRMED).
    """
    if not isinstance(record, dict):
        raise XapiError("FIELD_TYPE_ERROR", "args")
    out: dict[str, Any] = {}
    for field in required:
        if field not in record:
            raise XapiError("INTERNAL_ERROR", f'Server_helpers.Dispatcher_FieldNotFound("{field}")')
        out[field] = coerce(cls, field, record[field])
    for field in optional:
        if field in record:
            out[field] = coerce(cls, field, record[field])
    return out


def generic_message(state: SimState, cls: str, msg: str) -> Optional[Callable[..., Any]]:
    """The implementation of a generated message ``cls.msg``, or None if there is none."""
    fields = fields_of(cls)
    listable = cls != "session"

    def record(self: str) -> dict[str, Any]:
        with state.lock:
            return copy.deepcopy(state.get(cls, self))

    def where(expr: str) -> dict[str, dict[str, Any]]:
        predicate = compile_where(cls, str(expr), fields)
        return {ref: rec for ref, rec in state.all(cls).items() if predicate(rec)}

    simple: dict[str, Callable[..., Any]] = {
        "get_record": record,
        "get_by_uuid": lambda uuid: state.by_uuid(cls, str(uuid)),
    }
    if listable:
        simple.update(
            get_all=lambda: state.refs(cls),
            get_all_records=lambda: state.all(cls),
            get_all_records_where=where,
            get_all_where=lambda expr: list(where(expr)),
        )
    if cls in NAME_CLASSES:
        simple["get_by_name_label"] = lambda label: state.find(
            cls, lambda r: r["name_label"] == label
        )
    if msg in simple:
        return simple[msg]
    for prefix, maker in (
        ("get_", _getter),
        ("set_", _setter),
        ("add_to_", _map_add),
        ("remove_from_", _map_remove),
        ("add_", _set_add),
        ("remove_", _set_remove),
    ):
        field = msg[len(prefix) :]
        if msg.startswith(prefix) and field in fields:
            if prefix != "get_" and not settable(cls, field):
                return None
            return maker(state, cls, field)
    return None


def _getter(state: SimState, cls: str, field: str) -> Callable[..., Any]:
    def get(self: str) -> Any:
        with state.lock:
            return copy.deepcopy(state.get(cls, self)[field])

    return get


def _setter(state: SimState, cls: str, field: str) -> Callable[..., Any]:
    def set_(self: str, value: Any) -> str:
        with state.lock:
            state.get(cls, self)
            value = coerce(cls, field, value)
            target = REF_TARGETS.get(field)
            if target and value != NULL_REF:
                check_ref(state, target, value)
            state.update(cls, self, **{field: value})
        return ""

    return set_


def _map_add(state: SimState, cls: str, field: str) -> Optional[Callable[..., Any]]:
    if not isinstance(fields_of(cls)[field], dict):
        return None

    def add_to(self: str, key: str, value: str) -> str:
        with state.lock:
            current = state.get(cls, self)[field]
            if key in current:
                # ocaml/database/db_cache_impl.ml process_structured_field: [table; column; ref; key]
                raise XapiError("MAP_DUPLICATE_KEY", cls, db_column(cls, field), self, key)
            state.update(cls, self, **{field: {str(key): str(value), **current}})
        return ""

    return add_to


def _map_remove(state: SimState, cls: str, field: str) -> Optional[Callable[..., Any]]:
    if not isinstance(fields_of(cls)[field], dict):
        return None

    def remove_from(self: str, key: str) -> str:
        with state.lock:
            current = dict(state.get(cls, self)[field])
            current.pop(key, None)
            state.update(cls, self, **{field: current})
        return ""

    return remove_from


def _set_add(state: SimState, cls: str, field: str) -> Optional[Callable[..., Any]]:
    if not isinstance(fields_of(cls)[field], list):
        return None

    def add(self: str, value: Any) -> str:
        with state.lock:
            current = list(state.get(cls, self)[field])
            if value not in current:
                state.update(cls, self, **{field: [*current, value]})
        return ""

    return add


def _set_remove(state: SimState, cls: str, field: str) -> Optional[Callable[..., Any]]:
    if not isinstance(fields_of(cls)[field], list):
        return None

    def remove(self: str, value: Any) -> str:
        with state.lock:
            current = [v for v in state.get(cls, self)[field] if v != value]
            state.update(cls, self, **{field: current})
        return ""

    return remove
