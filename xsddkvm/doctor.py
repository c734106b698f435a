"""``doctor``: check everything a first build needs (this machine, the playbook, the host, the
DDK image and whether it matches the host) without creating anything. Each check is a ``Check``
record; the CLI renders them.

Only the standard library is imported at module level, so that a missing package shows up as a
failed package check instead of an import error.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import re
import socket
import ssl
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Optional

from .errors import AuthError, TLSError, XsddkvmError

if TYPE_CHECKING:
    from .build import HostAccess
    from .config import Playbook
    from .stages.context import ImageChoice
    from .xapi.session import XapiSession
    from .xapi.tls import TlsSettings

    HostOpener = Callable[[Playbook], ContextManager[tuple[HostAccess, Optional[ImageChoice]]]]

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
# (module, distribution, requirement): the install_requires of setup.cfg
PACKAGES = (
    ("XenAPI", "XenAPI", "XenAPI>=23.8"),
    ("paramiko", "paramiko", "paramiko>=3.4,<5"),
    ("requests", "requests", "requests>=2.28"),
    ("tenacity", "tenacity", "tenacity>=8.2"),
    ("click", "click", "click>=8.1"),
    ("yaml", "PyYAML", "PyYAML>=6.0"),
    ("pycdlib", "pycdlib", "pycdlib>=1.14"),
    ("xxhash", "xxhash", "xxhash>=3.0"),
)
PROBE_TIMEOUT = 10.0
# ddk.md §4: packs install on a running host; driver disks load at install time (F9)
LIVE_TARGET = (
    "live host: a supplemental pack for hosts of exactly this host's build; set target.installer "
    "to build a driver disk for an installer instead"
)
INSTALLER_TARGET = (
    "installer {installer}: a driver disk for the XenServer {installer} installer (F9 during "
    "host installation); the DDK must match that release, not this host"
)
# ddk.md §1.2: the DDK VM is labelled "<brand> DDK <product_version>-<build_number>"
# (gagomes/xenrt ova/patches/dom0/names)
DDK_LABEL = re.compile(r"DDK\s+(?P<version>[^\s-]+)-(?P<build>\S+)")


@dataclasses.dataclass(frozen=True)
class Check:
    """One finding: ``status`` is PASS, FAIL, WARN or SKIP; ``fix`` says what to do on FAIL."""

    name: str
    status: str
    detail: str
    fix: Optional[str] = None

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class DdkImage:
    """What the image says about itself; ``size`` is the DDK disk in bytes, when known."""

    label: str
    version: str = ""
    build: str = ""
    size: Optional[int] = None

    @classmethod
    def from_label(cls, label: str, size: Optional[int] = None) -> DdkImage:
        found = DDK_LABEL.search(label)
        if not found:
            return cls(label, size=size)
        return cls(label, found.group("version"), found.group("build"), size)


def _failed(name: str, exc: XsddkvmError) -> Check:
    return Check(name, FAIL, exc.message, exc.hint)


def _size(n: int) -> str:
    value, unit = float(n), 0
    while value >= 1024 and unit < 3:
        value, unit = value / 1024, unit + 1
    return f"{n} B" if unit == 0 else f"{value:.1f} {('KiB', 'MiB', 'GiB')[unit - 1]}"


# -- this machine ------------------------------------------------------------------------------
def environment_checks() -> list[Check]:
    """Python and every package xsddkvm needs (paramiko must be <5 for old DDKs)."""
    ok = sys.version_info >= (3, 9)
    fix = None if ok else "Install Python 3.9 or newer and reinstall xsddkvm with it."
    python = Check(
        "python", PASS if ok else FAIL, f"{platform.python_version()} ({sys.executable})", fix
    )
    return [python, *(check_package(*package) for package in PACKAGES)]


def check_package(
    module: str, dist: str, requirement: str, version_of: Callable[[str], str] = metadata.version
) -> Check:
    """``module`` importable, and for paramiko a version that still speaks to old DDKs."""
    name, fix = f"package {dist}", f"Run `pip install '{requirement}'`."
    if importlib.util.find_spec(module) is None:
        return Check(name, FAIL, "not installed", fix)
    try:
        version = version_of(dist)
    except metadata.PackageNotFoundError:
        return Check(name, PASS, "importable (no version recorded)")
    if dist == "paramiko" and int(version.split(".")[0]) >= 5:
        # env-probe.md §1: paramiko 5 removed every SHA-1 key exchange and ssh-rsa
        return Check(name, FAIL, f"{version}: 5.x cannot talk to a CentOS 5 DDK's sshd", fix)
    return Check(name, PASS, version)


# -- the playbook and local paths --------------------------------------------------------------
def _tools(pb: Playbook) -> Check:
    # pycdlib itself is among the package checks, which stop doctor when they fail
    source = pb.image.source
    if source.lower().endswith(".iso"):
        return Check("tools", PASS, "pycdlib reads the DDK .iso in place (no mount, no root)")
    kinds = {"template": "a template", "sim": "a simulated DDK"}
    kind = kinds.get(source.split(":")[0], "a .xva image")
    return Check("tools", PASS, f"no local tools needed for {kind}")


def _source(pb: Playbook) -> Check:
    from .stages.push import check_source

    try:
        root, files = check_source(pb)
    except XsddkvmError as exc:
        return _failed("source", exc)
    detail = f"{root}: {len(files)} files, {_size(sum(p.stat().st_size for p in files))}"
    # make reads the first of these that exists (GNU make manual, "What Name to Give")
    makefile = next(
        (root / n for n in ("GNUmakefile", "makefile", "Makefile") if (root / n).is_file()), None
    )
    if makefile is None:
        fix = "Put the Makefile at the top of source.dir (see `xsddkvm init`)."
        return Check("source", WARN, f"{detail}; no Makefile at its top, where make runs", fix)
    text = makefile.read_text(encoding="utf-8", errors="replace")
    missing = [t for t in pb.build.targets if not re.search(rf"^{re.escape(t)}\s*:", text, re.M)]
    if missing:
        detail += f"; {makefile.name} defines no target {', '.join(missing)}"
        return Check("source", WARN, detail, "Add the target, or change build.targets.")
    return Check("source", PASS, detail)


def _output(pb: Playbook) -> Check:
    out = Path(pb.artifacts.output_dir).expanduser().resolve()
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        fix = (
            "Choose another directory with -o DIR or artifacts.output_dir, or fix its permissions."
        )
        return Check("output", FAIL, f"{out} cannot be written ({existing} is not writable)", fix)
    later = "" if existing == out else " (will be created)"
    return Check("output", PASS, f"{out} is writable{later}")


# -- the host ----------------------------------------------------------------------------------
def check_host(url: str, tls: TlsSettings, timeout: float = PROBE_TIMEOUT) -> Check:
    """TCP then TLS to the host, as the build will do; prints the fingerprint to pin if untrusted."""
    from .xapi.tls import host_port, untrusted

    host, port = host_port(url)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        fix = f"Check host.url (the pool master), DNS, and that port {port} is open from here."
        return Check("host", FAIL, f"cannot connect to {host}:{port} ({exc.strerror or exc})", fix)
    try:
        if not url.startswith("https://"):
            detail = f"{host}:{port} answers over plain HTTP: the password is sent in clear"
            return Check("host", WARN, detail, "Use https:// in host.url.")
        with tls.context().wrap_socket(raw, server_hostname=host) as sock:
            tls.check_peer(sock, url)
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(url, untrusted(url, exc), timeout)
    except TLSError as exc:
        return _untrusted(url, exc, timeout)
    except (OSError, ssl.SSLError) as exc:
        fix = "Check that host.url points at the XenAPI port of a XenServer pool master."
        return Check("host", FAIL, f"no TLS handshake with {host}:{port} ({exc})", fix)
    finally:
        raw.close()
    if tls.insecure:
        fix = "Pin the certificate instead: host.tls_fingerprint."
        return Check("host", WARN, f"{host}:{port} answers; TLS verification is off", fix)
    how = "matches the pinned fingerprint" if tls.pin_sha256 else "is trusted"
    return Check("host", PASS, f"{host}:{port} answers over TLS; its certificate {how}")


def _untrusted(url: str, exc: TLSError, timeout: float) -> Check:
    from .xapi.tls import fetch_fingerprint

    try:
        seen = fetch_fingerprint(url, timeout)
    except XsddkvmError as again:
        return _failed("host", again)
    fix = (
        f"Confirm {seen} with the host's administrator, then pin it in the playbook: "
        f'host.tls_fingerprint: "{seen}" (`xsddkvm host fingerprint {url}` prints it again).'
    )
    return Check("host", FAIL, f"{exc.message} It presents fingerprint {seen}.", fix)


def _host_checks(pb: Playbook, opener: HostOpener) -> list[Check]:
    from .xapi.tls import TlsSettings

    simulated = pb.host.url.startswith("sim://")
    checks: list[Check] = []
    if not simulated:
        tls = TlsSettings(pb.host.tls_fingerprint, pb.host.ca_bundle, pb.host.insecure)
        checks.append(check_host(pb.host.url, tls, min(PROBE_TIMEOUT, pb.host.timeout)))
        if checks[-1].status == FAIL:
            return [*checks, *_offline(pb, "needs the host check to pass", "credentials")]
    try:
        with opener(pb) as (access, choice):
            if simulated:
                checks.append(check_host(access.url, access.tls))
            return checks + _session_checks(pb, access, choice)
    except XsddkvmError as exc:
        name = "credentials" if isinstance(exc, AuthError) else "host"
        return [*checks, _failed(name, exc), *_offline(pb, f"no {name}")]


def _offline(
    pb: Playbook, reason: str, *also: str, choice: Optional[ImageChoice] = None
) -> list[Check]:
    """The image check (local files only), and the host checks skipped for ``reason``."""
    image_check, _ = _image(pb, choice, None)
    skipped = [Check(n, SKIP, reason) for n in ("sr", "network", "ddk-match")]
    return [*(Check(n, SKIP, reason) for n in also), image_check, *skipped]


def _session_checks(pb: Playbook, access: HostAccess, choice: Optional[ImageChoice]) -> list[Check]:
    xs = access.session()
    try:
        xs.login()
    except XsddkvmError as exc:
        return [_failed("credentials", exc), *_offline(pb, "no login", choice=choice)]
    try:
        via = f" (via the pool member {xs.redirected_from})" if xs.redirected_from else ""
        login = Check("credentials", PASS, f"logged in to {xs.url} as {access.username}{via}")
        image_check, image = _image(pb, choice, xs)
        return [login, image_check, _sr(xs, pb, image), _network(xs, pb), _match(xs, pb, image)]
    finally:
        xs.logout()


def _sr(xs: XapiSession, pb: Playbook, image: Optional[DdkImage]) -> Check:
    from .xapi.vm import find_sr, sr_free_bytes

    try:
        sr = find_sr(xs, pb.vm.sr)
        with xs.doing("reading the SR's name"):
            label = xs.api.SR.get_name_label(sr)
        free = sr_free_bytes(xs, sr)
    except XsddkvmError as exc:
        return _failed("sr", exc)
    which = "vm.sr" if pb.vm.sr else "the pool's default SR"
    detail = f"'{label}' ({which}): {_size(free)} free"
    if image is None or image.size is None:
        return Check("sr", PASS, f"{detail}; the DDK disk size is unknown")
    detail += f", the DDK disk needs {_size(image.size)}"
    if free < image.size:
        return Check("sr", FAIL, detail, "Free space on that SR, or set vm.sr to a larger SR.")
    return Check("sr", PASS, detail)


def _network(xs: XapiSession, pb: Playbook) -> Check:
    from .xapi.vm import find_network

    try:
        net = find_network(xs, pb.vm.network)
        with xs.doing("reading the network"):
            rec = xs.api.network.get_record(net)
            pifs = xs.api.PIF.get_all_records().values()
    except XsddkvmError as exc:
        return _failed("network", exc)
    name = f"'{rec['name_label']}' ({rec['bridge']})"
    dhcp = "whether it has a DHCP server cannot be probed over XenAPI, and the DDK needs one"
    if any(p["management"] and p["network"] == net for p in pifs):
        return Check("network", PASS, f"{name}, the management network; {dhcp}")
    detail = f"{name} is not the management network; {dhcp}; this machine must reach the DDK"
    fix = "If the build waits for an IP in vain, set vm.network to a network with DHCP."
    return Check("network", WARN, detail, fix)


def _match(xs: XapiSession, pb: Playbook, image: Optional[DdkImage]) -> Check:
    """ddk.md §5 (citrix/xenserver-ddk rules-and-guidelines.md): the host a driver installs on must
    run the identical build of the DDK it was built in, "If it is not, the resulting driver disk
    will not install"; an installer target must match the installer's release instead."""
    if image is None or not image.version:
        why = f"its label {image.label!r} does not say" if image else "the image was not read"
        return Check("ddk-match", WARN, f"the DDK's version is unknown ({why})")
    ddk = f"{image.version}-{image.build}"
    installer = pb.target.installer
    if installer:
        ok = image.version == installer
        fix = None if ok else f"Use the DDK of XenServer {installer}, or correct target.installer."
        return Check("ddk-match", PASS if ok else FAIL, f"DDK {ddk}, installer {installer}", fix)
    try:
        with xs.doing("reading the host's version"):
            master = xs.api.pool.get_master(xs.api.pool.get_all()[0])
            # xenapi.md §8.1: keys from ocaml/xapi/create_misc.ml make_software_version
            version = xs.api.host.get_software_version(master)
    except XsddkvmError as exc:
        return _failed("ddk-match", exc)
    host_version, build = version.get("product_version", ""), version.get("build_number", "")
    kernel = version.get("linux", "unknown")
    if not host_version:
        return Check("ddk-match", WARN, f"the host reports no product_version (kernel {kernel})")
    if (image.version, image.build) == (host_version, build):
        detail = f"DDK {ddk} is the host's build; its `uname -r` must be the host's {kernel}"
        return Check("ddk-match", PASS, detail)
    detail = (
        f"DDK {ddk} but the host runs {host_version}-{build} (kernel {kernel}): a driver built "
        "in this DDK will not install on this host"
    )
    fix = (
        f"Use the DDK released for XenServer {host_version} build {build} "
        f"(XenServer-{host_version}-DDK.iso), or set target.installer for an installer driver disk."
    )
    return Check("ddk-match", FAIL, detail, fix)


# -- the DDK image -----------------------------------------------------------------------------
def _image(
    pb: Playbook, choice: Optional[ImageChoice], xs: Optional[XapiSession]
) -> tuple[Check, Optional[DdkImage]]:
    source = pb.image.source
    if source.startswith("template:"):
        if xs is None:
            return Check("image", SKIP, f"{source}: reading a template needs a login"), None
        try:
            with xs.doing("looking up the DDK template"):
                label = xs.api.VM.get_name_label(xs.api.VM.get_by_uuid(source[len("template:") :]))
        except XsddkvmError as exc:
            return _failed("image", exc), None
        return Check("image", PASS, f"{source}: {label}"), DdkImage.from_label(label)
    if choice is None and source.startswith("sim:"):
        return Check("image", SKIP, f"{source} is generated only for a sim:// host"), None
    path = choice.path if choice and choice.path else pb.resolve(source)
    if not path.is_file():
        fix = "Download the DDK ISO for your host's XenServer release and set image.source to it."
        return Check("image", FAIL, f"{path} does not exist", fix), None
    try:
        image = read_image(path)
    except ImportError as exc:
        return Check("image", SKIP, f"{path.name}: no image reader installed ({exc})"), None
    except XsddkvmError as exc:
        return _failed("image", exc), None
    except OSError as exc:
        detail = f"{path} cannot be read ({exc.strerror or exc})"
        return Check("image", FAIL, detail, "Check the file's permissions."), None
    size = f", disk {_size(image.size)}" if image.size is not None else ""
    return Check("image", PASS, f"{path.name}: {image.label}{size}"), image


def read_image(path: Path) -> DdkImage:
    """Label, version and disk size of a DDK .iso or .xva, reading only its metadata."""
    if path.suffix.lower() == ".iso":
        from .image.ddk_iso import open_ddk_iso

        with open_ddk_iso(path) as iso:
            return DdkImage(
                iso.spec.name_label, iso.product_version, iso.build_number, iso.spec.disk_size
            )
    from .image.xva import read_xva_header

    # The VM label names the DDK; the XVA's version header names the host that exported it.
    header = read_xva_header(path)
    return DdkImage.from_label(header.name_label, header.disk_size)


# -- target and guest --------------------------------------------------------------------------
def _target(pb: Playbook) -> Check:
    installer = pb.target.installer
    if installer:
        return Check("target", PASS, INSTALLER_TARGET.format(installer=installer))
    return Check("target", PASS, LIVE_TARGET)


def check_guest(guest: Optional[str], default_port: int = 22) -> Check:
    """An SSH handshake (no login) with a running DDK at ``IP[:PORT]``."""
    if not guest:
        return Check("guest-ssh", SKIP, "pass --guest IP to test SSH to a running DDK")
    host, _, port_text = guest.partition(":")
    if not port_text.isdigit() and port_text:
        return Check("guest-ssh", FAIL, f"{guest!r} is not IP[:PORT]", "Pass --guest 10.0.0.5:22.")
    port = int(port_text or default_port)
    try:
        banner, key = _ssh_handshake(host, port, PROBE_TIMEOUT)
    except XsddkvmError as exc:
        return _failed("guest-ssh", exc)
    return Check("guest-ssh", PASS, f"{host}:{port} speaks SSH ({banner}), host key {key}")


def _ssh_handshake(host: str, port: int, timeout: float) -> tuple[str, str]:
    import paramiko

    from .guest.ssh import fingerprint
    from .guest.ssh_errors import translate_error

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            transport = paramiko.Transport(sock)
            transport.banner_timeout = transport.handshake_timeout = timeout
            try:
                transport.start_client(timeout=timeout)
                key = fingerprint(transport.get_remote_server_key().asbytes())
                return str(transport.remote_version), key
            finally:
                transport.close()
    except Exception as exc:  # every paramiko/socket failure becomes a GuestError with a hint
        raise translate_error(exc, host, port) from None


# -- all together ------------------------------------------------------------------------------
def run_checks(
    pb: Optional[Playbook],
    access_opener: HostOpener,
    *,
    guest: Optional[str] = None,
    load_error: Optional[XsddkvmError] = None,
) -> list[Check]:
    """Every check, in order; ``load_error`` is why ``pb`` is None when a playbook was given."""
    checks = environment_checks()
    if any(c.status == FAIL for c in checks):
        return [*checks, Check("playbook", SKIP, "fix the Python environment first")]
    if pb is None:
        if load_error is not None:
            checks.append(_failed("playbook", load_error))
        else:
            checks.append(Check("playbook", SKIP, "no playbook given: host checks need one"))
        return [*checks, check_guest(guest)]
    checks += [Check("playbook", PASS, f"{pb.path} loads"), _tools(pb), _source(pb), _output(pb)]
    checks += _host_checks(pb, access_opener)
    return [*checks, _target(pb), check_guest(guest, pb.vm.ssh_port)]
