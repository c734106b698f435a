"""XenAPI failure codes, explained: one table entry per code, and ``explain_failure``.

Codes: xapi-project/xen-api ocaml/xapi-consts/api_errors.ml; parameter layouts:
ocaml/idl/datamodel_errors.ml, or the raise site where it differs (cited per group).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from ...errors import (
    AuthError,
    HostAPIError,
    ImageError,
    InstallError,
    StorageError,
    XsddkvmError,
)
from .text import Explanation, fill, param_text, scrub

_GC = "`xsddkvm gc https://{host} --dry-run`"
_GC_RUN = "`xsddkvm gc https://{host}`"
_INFO = "`xsddkvm host info https://{host}`"
_GC_RETRY = f"Run {_GC} to find and remove what earlier runs left, then run the command again."
_API_SKEW = "This xsddkvm and the host's XenServer version disagree about the API."
_REPORT = f"Check the host version with {_INFO} and report it together with this message."
_FREE_SR = f"Free space with {_GC_RUN} (try `--dry-run` first), or set `vm.sr` to a roomier SR."
_REIMPORT = "Download the DDK image again and check it with `xsddkvm image list`, then retry."
_FORCE_OFF = f"Force it off with `xe vm-shutdown vm=<name> --force`, then run {_GC_RUN}."
_DOM0_SPACE = "Free space in dom0 (`xe update-pool-clean` for old updates, old logs in /var/log)."
_XAPI_LOG = "Look at /var/log/xensource.log on the host"
_APPLIED_HINT = "See installed packs with `xe update-list`; a changed pack needs a new version."

# fmt: off
_TABLE: tuple[Explanation, ...] = (
    # Sessions: ocaml/xapi/xapi_session.ml (raises [uname; msg]), ocaml/xapi/session_check.ml.
    Explanation("SESSION_AUTHENTICATION_FAILED", ("user", "reason"), AuthError,
        "the host refused the login of user {user} ({reason}).",
        "The user name or the password is wrong, or the password source holds an old value.",
        "Check `host.username` and the password source: the variable named by "
        f"`host.password_env`, or `host.password_file`. Then try {_INFO}."),
    Explanation("SESSION_INVALID", ("handle",), HostAPIError,
        "the host no longer accepts our login session.",
        "Sessions end when the toolstack restarts, after 24 hours idle, or beyond 500 per user.",
        f"Run the command again; if it keeps happening, check the host with {_INFO}."),
    Explanation("HOST_IS_SLAVE", ("master",), HostAPIError,
        "this host is a pool member, not the pool master; the master is {master}.",
        "XenAPI calls must go to the pool master.",
        "Set `host.url` to https://{master} in the playbook."),
    # Objects and the RPC layer: ocaml/xapi/exnHelper.ml, ocaml/xapi/server_helpers.ml.
    Explanation("HANDLE_INVALID", ("class", "handle"), HostAPIError,
        "the {class} object {handle} no longer exists.",
        "Another run, a cleanup or an administrator removed it while xsddkvm was using it.",
        _GC_RETRY),
    Explanation("UUID_INVALID", ("class", "uuid"), HostAPIError,
        "there is no {class} with UUID {uuid} on this host.",
        "The playbook or the image cache names an object that was deleted or is in another pool.",
        "Check the UUIDs with `xsddkvm doctor PLAYBOOK` and `xsddkvm image list`."),
    Explanation("MESSAGE_METHOD_UNKNOWN", ("method",), HostAPIError,
        "the host does not know the API call {method}.",
        "The host runs an older XenServer than this xsddkvm supports.", _REPORT),
    Explanation("MESSAGE_PARAMETER_COUNT_MISMATCH", ("method", "expected", "received"),
        HostAPIError, "the API call {method} expects {expected} parameters but got {received}.",
        _API_SKEW, _REPORT),
    Explanation("FIELD_TYPE_ERROR", ("field",), HostAPIError,
        "the host got a value of the wrong type for {field}.", _API_SKEW, _REPORT),
    Explanation("INVALID_VALUE", ("field", "value"), HostAPIError,
        "the host rejected the value {value} for {field}.",
        "A playbook setting is out of range for this host (memory or vCPU counts, for example).",
        "Check the playbook with `xsddkvm doctor PLAYBOOK`."),
    Explanation("MAP_DUPLICATE_KEY", ("class", "field", "ref", "key"), HostAPIError,
        "the key {key} is already set in {field} of {class} {ref}.",
        "An earlier, interrupted run already tagged this object.", _GC_RETRY),
    Explanation("INTERNAL_ERROR", ("message",), HostAPIError,
        "the host hit an internal error: {message}.",
        "This is a fault in the XenServer toolstack, often after an earlier operation failed.",
        f"{_XAPI_LOG}, run {_GC}, then retry."),
    # Permissions: ocaml/idl/datamodel_errors.ml.
    Explanation("PERMISSION_DENIED", ("message",), HostAPIError,
        "the host denied permission: {message}.",
        "The account in the playbook is not allowed to do this.",
        "Set `host.username` to an account with the Pool Admin role, or ask the pool admin."),
    Explanation("RBAC_PERMISSION_DENIED", ("permission", "message"), HostAPIError,
        "the account lacks the permission {permission} ({message}).",
        "Its role is too limited to create, start and remove VMs.",
        "Set `host.username` to an account with the Pool Admin or VM Admin role (XenCenter: Pool > "
        "Properties > Users)."),
    Explanation("LICENCE_RESTRICTION", ("feature",), HostAPIError,
        "the host's licence does not include {feature}.",
        "Some features need a paid XenServer edition.",
        "Check the licence with `xe host-license-view` or in XenCenter (Tools > License Manager)."),
    Explanation("NOT_SUPPORTED_DURING_UPGRADE", (), HostAPIError,
        "the pool is in the middle of a rolling upgrade, so this is not allowed.",
        "Hosts of the pool run different XenServer versions until the upgrade finishes.",
        f"Finish the upgrade (XenCenter: Tools > Rolling Pool Upgrade), then check with {_INFO}."),
    # VM lifecycle: ocaml/xapi/xapi_vm_lifecycle.ml (check_operation_error, report_*_error).
    Explanation("OPERATION_NOT_ALLOWED", ("reason",), HostAPIError,
        "the host does not allow this now: {reason}.",
        "The object is in a state where this step cannot run, often left so by an earlier run.",
        _GC_RETRY),
    Explanation("OPERATION_BLOCKED", ("ref", "reason"), HostAPIError,
        "the operation is blocked on {ref}: {reason}.",
        "An administrator protected the object with blocked_operations.",
        "Ask the administrator, or clear it with "
        "`xe vm-param-clear uuid=<uuid> param-name=blocked-operations`."),
    Explanation("OTHER_OPERATION_IN_PROGRESS", ("class", "object", "operation", "task"),
        HostAPIError, "the {class} {object} is busy with {operation} (task {task}).",
        "Another client or an earlier xsddkvm run is still working on it.",
        "Wait for it (`xe task-list`) or cancel it with `xe task-cancel uuid=<task uuid>`."),
    Explanation("VM_BAD_POWER_STATE", ("vm", "expected", "actual"), HostAPIError,
        "the VM {vm} is {actual} but this step needs it {expected}.",
        "Someone started or stopped it outside xsddkvm, or an earlier run was interrupted.",
        f"Run {_GC} to find VMs left by earlier runs, or `xe vm-shutdown vm=<name> --force`."),
    Explanation("VM_IS_TEMPLATE", ("vm", "operation"), HostAPIError,
        "{vm} is a template, so {operation} cannot run on it.",
        "The playbook or the image cache points at a template instead of a VM.",
        "Check the cached images with `xsddkvm image list`."),
    Explanation("VM_HVM_REQUIRED", ("vm",), HostAPIError,
        "the VM {vm} needs hardware virtualisation (HVM), which this host does not offer.",
        "VT-x/AMD-V is off in the BIOS, or the host is itself a VM without nested virtualisation.",
        "Enable it in the BIOS; `xe host-param-get uuid=<host uuid> param-name=capabilities` "
        "must list hvm."),
    Explanation("VM_LACKS_FEATURE", ("vm",), HostAPIError,
        "the VM {vm} cannot be shut down or rebooted cleanly.",
        "Its guest does not announce clean shutdown support yet, for example while it boots.",
        _FORCE_OFF),
    Explanation("VM_MISSING_PV_DRIVERS", ("vm",), HostAPIError,
        "the VM {vm} has no guest tools running, so the host cannot ask it to do this.",
        "The DDK guest has not finished booting, or its guest agent did not start.",
        "Watch the VM console in XenCenter, and check the setup with `xsddkvm doctor PLAYBOOK`."),
    # Shutdown errors come back from xenopsd: ocaml/xapi/xapi_xenops.ml.
    Explanation("VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", ("vm",), HostAPIError,
        "the VM {vm} did not acknowledge the shutdown request.",
        "The guest is hung or still booting.", _FORCE_OFF),
    Explanation("VM_SHUTDOWN_TIMEOUT", ("vm", "timeout"), HostAPIError,
        "the VM {vm} did not shut down within {timeout} seconds.",
        "A process in the guest, such as a build, kept it from stopping.", _FORCE_OFF),
    # VM.start / assert_can_boot_here: ocaml/xapi/xapi_vm_helpers.ml.
    Explanation("VM_REQUIRES_SR", ("vm", "sr"), StorageError,
        "the VM {vm} needs the storage repository {sr}, which this host cannot reach.",
        "The SR is unplugged, or it is local to another host of the pool.",
        "Set `vm.sr` to an SR this host can see (`xe sr-list`), or repair it in XenCenter."),
    Explanation("VM_REQUIRES_NETWORK", ("vm", "network"), HostAPIError,
        "the VM {vm} needs the network {network}, which this host cannot reach.",
        "The network has no physical interface on this host.",
        "Set `vm.network` in the playbook to a network listed by `xe network-list`."),
    Explanation("NO_HOSTS_AVAILABLE", (), HostAPIError,
        "no host in the pool can start the VM.",
        "No host has enough free memory, or none reaches the VM's disks and networks.",
        f"Check free memory with {_INFO} and remove leftover VMs with {_GC}."),
    Explanation("HOST_NOT_ENOUGH_FREE_MEMORY", ("needed", "available"), HostAPIError,
        "the VM needs {needed} bytes of free memory but the host has only {available}.",
        "Other VMs use the memory, possibly ones left by earlier builds.",
        f"Run {_GC} to find leftovers, or lower `vm.memory_mib` in the playbook."),
    Explanation("BOOTLOADER_FAILED", ("vm", "message"), HostAPIError,
        "the boot loader of the VM {vm} failed: {message}.",
        "The DDK disk is damaged or incomplete, often after an interrupted import.",
        f"Remove the image with {_GC_RUN} and import it again (`xsddkvm image list`)."),
    Explanation("UNKNOWN_BOOTLOADER", ("vm", "bootloader"), HostAPIError,
        "the VM {vm} asks for the boot loader {bootloader}, which this host does not have.",
        "The DDK image was made for a different XenServer version.",
        f"Use a DDK that matches the host: compare {_INFO} with `xsddkvm image list`."),
    # Devices: ocaml/xapi/xapi_vif_helpers.ml, ocaml/xapi/xapi_vbd.ml.
    Explanation("DEVICE_ALREADY_EXISTS", ("device",), HostAPIError,
        "device slot {device} of the VM is already taken.",
        "An earlier attempt already added a network card or disk there.", _GC_RETRY),
    Explanation("INVALID_DEVICE", ("device",), HostAPIError,
        "{device} is not a valid device slot for a network card or disk.",
        "A slot is a small number such as 0 (or autodetect for disks).",
        "Check the device numbers with `xsddkvm doctor PLAYBOOK`."),
    Explanation("MAC_INVALID", ("mac",), HostAPIError,
        "{mac} is not a valid MAC address.", "A MAC must look like aa:bb:cc:dd:ee:ff.",
        "Fix it in the playbook or leave it empty so the host picks one; check with "
        "`xsddkvm doctor PLAYBOOK`."),
    Explanation("VDI_IN_USE", ("vdi", "operation"), HostAPIError,
        "the disk {vdi} is still in use, so {operation} cannot run.",
        "A VM, often one left running by an earlier build, still has it attached.",
        f"Run {_GC} to find the VM holding it."),
    # Storage: SR_BACKEND_FAILURE_<n> come from the storage manager (SM error code n);
    # params [status; message; stderr], e.g. ["", "There is insufficient space", ""] (UNCONFIRMED).
    Explanation("SR_FULL", ("requested", "maximum"), StorageError,
        "the storage repository is full: {requested} bytes requested, at most {maximum} free.",
        "Disks of earlier builds or other VMs fill it.", _FREE_SR),
    Explanation("SR_BACKEND_FAILURE_44", ("status", "message", "detail"), StorageError,
        "the storage repository has not enough free space for the disk ({message}).",
        "Leftover disks from earlier builds are a common reason.", _FREE_SR),
    Explanation("SR_BACKEND_FAILURE", ("status", "message", "detail"), StorageError,
        "the storage driver failed ({message} {detail}).",
        "The storage repository reported a problem of its own; the number is its error code.",
        "Check the SR in XenCenter or with `xe sr-scan uuid=<sr uuid>`; set `vm.sr` to "
        "another SR if it persists."),
    Explanation("SR_OPERATION_NOT_SUPPORTED", ("sr",), StorageError,
        "the storage repository {sr} cannot hold VM disks (an ISO library, for example).",
        "`vm.sr` or the pool default SR points at an ISO or read-only SR.",
        "Set `vm.sr` to a disk SR such as Local storage (`xe sr-list content-type=user`)."),
    Explanation("VDI_MISSING", ("sr", "vdi"), StorageError,
        "the disk {vdi} is missing from the storage repository {sr}.",
        "Its file was deleted outside XenServer, or the SR needs a rescan.",
        "Rescan with `xe sr-scan uuid=<sr uuid>`, then import the DDK image again."),
    # /import: ocaml/xapi/import.ml, ocaml/xapi/importexport.ml (sr_of_req, get_default_sr).
    Explanation("DEFAULT_SR_NOT_FOUND", ("sr",), StorageError,
        "the pool has no default storage repository to put the disk in.",
        "No SR was named, and the pool's default SR is unset or gone.",
        "Set `vm.sr` in the playbook (see `xe sr-list`), or set a default SR in XenCenter."),
    Explanation("IMPORT_ERROR", ("message",), ImageError,
        "the host could not import the image: {message}.",
        "The image file is damaged, truncated or not a XenServer export.", _REIMPORT),
    Explanation("IMPORT_ERROR_PREMATURE_EOF", (), ImageError,
        "the image upload ended before the whole file arrived.",
        "The image file is truncated, or the connection dropped during the upload.", _REIMPORT),
    Explanation("IMPORT_ERROR_SOME_CHECKSUMS_FAILED", (), ImageError,
        "some blocks of the image did not match their checksums.",
        "The image file is corrupt, for example after an incomplete download.", _REIMPORT),
    Explanation("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED", (), ImageError,
        "the host refused the upload because it was sent in chunks.",
        "The host needs an upload of known length; a proxy on the way may have re-encoded it.",
        "Connect to the host directly: unset `HTTPS_PROXY` and `HTTP_PROXY`, then retry."),
    Explanation("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", ("id",), ImageError,
        "the image refers to an object {id} that it does not contain.",
        "The image's ova.xml is damaged or was edited.", _REIMPORT),
    Explanation("IMPORT_ERROR_UNEXPECTED_FILE", ("expected", "found"), ImageError,
        "the image starts with {found} where the host expected {expected}.",
        "The file is not an XVA export (an ISO or OVA given where an XVA is needed, say).",
        "Check the image path in the playbook and the format with `xsddkvm image list`."),
    Explanation("IMPORT_INCOMPATIBLE_VERSION", (), ImageError,
        "the image was exported by a newer XenServer than this host runs.",
        "A newer host writes images an older host cannot read.",
        f"Use a DDK image that matches the host version ({_INFO})."),
    # Tasks and events: ocaml/xapi/taskHelper.ml, ocaml/xapi/xapi_event.ml.
    Explanation("TASK_CANCELLED", ("task",), HostAPIError,
        "the task {task} was cancelled.",
        "Someone cancelled it in XenCenter or with xe, or xsddkvm was interrupted.", _GC_RETRY),
    Explanation("EVENTS_LOST", (), HostAPIError,
        "the host dropped events xsddkvm was waiting for.",
        "The host was very busy, or the connection stalled for a long time.",
        f"Run the command again; check the host with {_INFO}."),
    Explanation("EVENT_FROM_TOKEN_PARSE_FAILURE", ("token",), HostAPIError,
        "the host did not understand the event token {token}.",
        "The toolstack restarted, so earlier tokens are no longer valid.",
        f"Run the command again; check the host with {_INFO}."),
    # Packs as pool_update: ocaml/xapi/xapi_pool_update.ml, python3/extensions/pool_update.*.
    Explanation("INVALID_UPDATE", ("info",), InstallError,
        "the host does not accept the pack as an update: {info}.",
        "The pack ISO lacks a valid update.xml, or it is not a supplemental pack.",
        "Rebuild the pack and check the setup with `xsddkvm doctor PLAYBOOK`."),
    Explanation("UPDATE_ALREADY_EXISTS", ("uuid",), InstallError,
        "an update with UUID {uuid} is already uploaded to the pool.",
        "An earlier install uploaded the same pack and did not remove it.",
        "Remove the old upload with `xe update-destroy uuid={uuid}`, then retry."),
    Explanation("UPDATE_ALREADY_APPLIED", ("update",), InstallError,
        "the pack {update} is already installed on this host.",
        "An earlier run or an administrator applied it; nothing more is needed.",
        _APPLIED_HINT),
    Explanation("UPDATE_ALREADY_APPLIED_IN_POOL", ("update",), InstallError,
        "the pack {update} is already installed on every host of the pool.",
        "An earlier run or an administrator applied it; nothing more is needed.",
        _APPLIED_HINT),
    Explanation("UPDATE_PRECHECK_FAILED_UNKNOWN_ERROR", ("update", "info"), InstallError,
        "the pre-install check of {update} failed: {info}.",
        "The host's update checker hit an unexpected problem.",
        f"{_XAPI_LOG}, then try `xe update-precheck uuid=<uuid> host-uuid=<host uuid>`."),
    Explanation("UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING", ("update", "prerequisite"),
        InstallError, "{update} needs the update {prerequisite} installed first.",
        "The pack was built for a newer update level than the host has.",
        f"Install {{prerequisite}} on the host, or build with the DDK that matches {_INFO}."),
    Explanation("UPDATE_PRECHECK_FAILED_CONFLICT_PRESENT", ("update", "conflict"), InstallError,
        "{update} conflicts with the installed update {conflict}.",
        "Another version of the pack, or a pack replacing the same driver, is installed.",
        "Remove {conflict} first (see `xe update-list`), then retry."),
    Explanation("UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION",
        ("update", "installed", "required"), InstallError,
        "{update} needs XenServer {required} but the host runs {installed}.",
        "The pack was built with a DDK for another host version.",
        f"Build with the DDK that matches the host: compare {_INFO} with `xsddkvm image list`."),
    Explanation("UPDATE_PRECHECK_FAILED_OUT_OF_SPACE", ("update", "available", "required"),
        InstallError, "installing {update} needs {required} bytes in dom0, {available} are free.",
        "The host's own disk is full of old logs, crash dumps or updates.", _DOM0_SPACE),
    Explanation("UPDATE_PRECHECK_FAILED_GPGKEY_NOT_IMPORTED", ("update",), InstallError,
        "{update} is signed with a key the host does not trust.",
        "The pack was signed with a key that is not imported on the host.",
        "Import the public key in dom0 (`rpm --import <key file>`), or sign with a trusted key."),
    Explanation("UPDATE_APPLY_FAILED", ("output",), InstallError,
        "installing the pack failed: {output}.",
        "An RPM in the pack did not install: a missing dependency or a failing script.",
        "Read /var/log/yum.log in dom0, and check the build with `xsddkvm doctor PLAYBOOK`."),
    Explanation("UPDATE_IS_APPLIED", (), InstallError,
        "the pack cannot be removed because it is still installed on a host.",
        "An installed update stays recorded until it is uninstalled.",
        "Leave it in place, or remove only its upload with `xe update-pool-clean uuid=<uuid>`."),
    Explanation("OUT_OF_SPACE", ("location",), StorageError,
        "there is no space left at {location} on the host to unpack the pack.",
        "The host's own disk (dom0) is full.", _DOM0_SPACE),
    # Host plugins: ocaml/xapi/xapi_plugins.ml.
    Explanation("XENAPI_PLUGIN_FAILURE", ("status", "stdout", "stderr"), HostAPIError,
        "a host plugin failed ({status}): {stderr}",
        "The plugin xsddkvm called on the host hit an error.",
        f"{_XAPI_LOG}, and check the host with {_INFO}."),
    Explanation("XENAPI_MISSING_PLUGIN", ("name",), HostAPIError,
        "the host has no plugin named {name}.",
        "The plugin ships only with some XenServer or XCP-ng versions.",
        f"Check the host product and version with {_INFO}."),
)
# fmt: on

FAILURES: Mapping[str, Explanation] = {e.code: e for e in _TABLE}
_SR_BACKEND = "SR_BACKEND_FAILURE"


def lookup(code: str) -> Optional[Explanation]:
    """The table entry for a wire code; any ``SR_BACKEND_FAILURE_<n>`` falls back to the generic."""
    if code in FAILURES:
        return FAILURES[code]
    if code.startswith(_SR_BACKEND + "_"):
        return FAILURES[_SR_BACKEND]
    return None


def explain_failure(details: Sequence[str], *, host: str, action: str) -> XsddkvmError:
    """The error for a XenAPI ``ErrorDescription`` (``[code, *params]``) met while ``action``."""
    code = str(details[0]) if details else ""
    params = _hide_session_refs(code, [str(p) for p in details[1:]])
    entry = lookup(code)
    values = {"host": scrub(host), "action": scrub(action), "code": code or "an empty error"}
    if entry is None:
        values["shown"] = ", ".join(param_text(p) for p in params) or "no parameters"
        message = fill("While {action}, {host} reported {code} ({shown}).", values)
        search = "Search for {code} in the XenServer documentation, or run" if code else "Run"
        hint = fill(f"{search} `xsddkvm doctor PLAYBOOK` to check the host and playbook.", values)
        return HostAPIError(message, hint, code=code, params=params)
    values.update(zip(entry.params, (param_text(p) for p in params)))
    message = fill(
        f"While {{action}}, {{host}} reported {{code}}: {entry.what} {entry.cause}", values
    )
    return entry.error(message, fill(entry.hint, values), code=code, params=params)


def _hide_session_refs(code: str, params: list[str]) -> list[str]:
    # A session ref is a bearer credential: SESSION_INVALID [handle] (ocaml/xapi/session_check.ml)
    # and HANDLE_INVALID ["session"; ref] (ocaml/xapi/exnHelper.ml) carry one.
    if code == "SESSION_INVALID":
        return ["***" for _ in params]
    if code == "HANDLE_INVALID" and params[:1] == ["session"]:
        return params[:1] + ["***" for _ in params[1:]]
    return params
