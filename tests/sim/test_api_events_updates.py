"""event.from batches and tokens, pool_update from a real ISO, hotfixes changing the host."""

from __future__ import annotations

import io
import time
from typing import Any, Callable

import pycdlib
import pytest
import XenAPI

from xsddkvm.sim.server import SimServer

UPDATE_XML = (
    b'<update name-label="XS82ECU1001" name-description="Test update" version="1.0" '
    b'uuid="3f2504e0-4f89-11d3-9a0c-0305e82c3301" installation-size="1048576" '
    b'after-apply-guidance="restartHost"/>'
)


def failure(call: Callable[..., Any], *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return list(info.value.details)


def event_from(xapi: Any, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    return dict(getattr(xapi.event, "from")(classes, token, timeout))


def update_iso(update_xml: bytes) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09")
    iso.add_fp(io.BytesIO(update_xml), len(update_xml), "/UPDATE.XML;1", rr_name="update.xml",
               joliet_path="/update.xml")  # fmt: skip
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def upload_vdi(sim: SimServer, xapi: Any, data: bytes) -> str:
    """A VDI holding ``data`` (written straight into its file, as an upload would)."""
    size = -(-len(data) // 1048576) * 1048576
    vdi = xapi.VDI.create({
        "SR": sim.host.sr, "virtual_size": str(size), "type": "user", "sharable": False,
        "read_only": True, "other_config": {},
    })  # fmt: skip
    with open(sim.host.vdi_path(vdi), "r+b") as f:
        f.write(data)
    return str(vdi)


def test_event_from_returns_changes_and_advances_the_token(xapi: Any) -> None:
    first = event_from(xapi, ["vm"], "", 1.0)
    assert first["events"] and all(e["operation"] == "add" for e in first["events"])
    assert all(e["class"] == "vm" for e in first["events"])
    assert first["valid_ref_counts"]["vm"] == 1  # dom0 (an <i4> on the wire)
    dom0 = first["events"][0]["ref"]
    xapi.VM.set_name_description(dom0, "renamed")
    second = event_from(xapi, ["VM"], first["token"], 5.0)
    assert second["token"] > first["token"]
    (event,) = second["events"]
    assert (event["operation"], event["ref"]) == ("mod", dom0)
    assert event["snapshot"]["name_description"] == "renamed"
    assert int(event["id"]) > 0 and event["timestamp"] == "0.0"


def test_event_from_waits_for_the_timeout_when_nothing_changes(xapi: Any) -> None:
    token = event_from(xapi, ["vm"], "", 1.0)["token"]
    started = time.monotonic()
    quiet = event_from(xapi, ["vm"], token, 0.3)
    assert quiet["events"] == [] and quiet["token"] == token
    assert 0.25 <= time.monotonic() - started < 5
    assert failure(event_from, xapi, ["vm"], "garbage", 0.1) == [
        "EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage",
    ]  # fmt: skip


def test_pending_task_destroy_only_marks_it(xapi: Any) -> None:
    task = xapi.task.create("label", "description")
    xapi.task.destroy(task)
    assert xapi.task.get_current_operations(task) == {"task": "destroy"}


def test_event_from_sees_deletions_without_snapshot(xapi: Any) -> None:
    token = event_from(xapi, ["task"], "", 0.1)["token"]
    task = xapi.task.create("label", "description")
    xapi.task.cancel(task)
    assert xapi.task.get_status(task) == "cancelled"
    assert xapi.task.get_error_info(task) == ["TASK_CANCELLED", task]
    xapi.task.destroy(task)
    events = event_from(xapi, ["task"], token, 5.0)["events"]
    assert [(e["ref"], e["operation"]) for e in events] == [(task, "del")]
    assert "snapshot" not in events[0]


def test_pool_update_introduce_apply_and_apply_again(sim: SimServer, xapi: Any) -> None:
    host = xapi.host.get_all()[0]
    vdi = upload_vdi(sim, xapi, update_iso(UPDATE_XML))
    update = xapi.pool_update.introduce(vdi)
    record = xapi.pool_update.get_record(update)
    assert record["name_label"] == "XS82ECU1001" and record["installation_size"] == "1048576"
    assert record["after_apply_guidance"] == ["restartHost"]
    assert xapi.pool_update.precheck(update, host) == "ok"
    xapi.pool_update.apply(update, host)
    assert update in xapi.host.get_updates(host)
    assert xapi.pool_update.get_hosts(update) == [host]
    assert failure(xapi.pool_update.apply, update, host) == ["UPDATE_ALREADY_APPLIED", update]
    assert failure(xapi.pool_update.introduce, vdi) == [
        "UPDATE_ALREADY_EXISTS", "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    ]  # fmt: skip
    xapi.pool_update.pool_clean(update)
    assert xapi.pool_update.get_vdi(update) == "OpaqueRef:NULL"
    assert failure(xapi.VDI.get_record, vdi)[0] == "HANDLE_INVALID"
    assert failure(xapi.pool_update.destroy, update) == ["UPDATE_IS_APPLIED"]


def test_pool_update_rejects_a_vdi_without_update_xml(sim: SimServer, xapi: Any) -> None:
    not_iso = upload_vdi(sim, xapi, b"not an iso image")
    assert failure(xapi.pool_update.introduce, not_iso)[0] == "INVALID_UPDATE"
    no_uuid = upload_vdi(sim, xapi, update_iso(b'<update name-label="x" version="1"/>'))
    assert failure(xapi.pool_update.introduce, no_uuid) == [
        "INVALID_UPDATE", "missing <uuid> in update.xml",
    ]  # fmt: skip


def test_hotfix_changes_the_host_software_version(sim: SimServer, xapi: Any) -> None:
    host = xapi.host.get_all()[0]
    before = xapi.host.get_software_version(host)
    update = sim.host.apply_hotfix(build_number="59", linux="4.19.0+2")
    after = xapi.host.get_software_version(host)
    assert (before["build_number"], before["linux"]) == ("58", "4.19.0+1")
    assert (after["build_number"], after["linux"]) == ("59", "4.19.0+2")
    assert after["product_version"] == before["product_version"]
    assert xapi.host.get_updates(host) == [update]
    assert xapi.pool_update.get_hosts(update) == [host]
