"""Playbooks: the schema is declared once here (types, defaults, docs) and validated at load.

Precedence, highest first: command-line flags, the playbook file, the defaults below.
Errors name the place: ``playbooks/x.yml: build.targets[1]: expected a string, got 3``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import stat
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import yaml

from .errors import AuthError, ConfigError
from .secrets import Secret


def _f(default: Any, doc: str) -> Any:
    """A schema field with its default and its one-line documentation."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"doc": doc}
        )
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass
class HostConfig:
    url: str = _f(
        "sim://default",
        "XenAPI URL of the pool master (`https://xs1.lab`), or `sim://default` for the built-in simulator.",
    )
    username: str = _f("root", "XenAPI user name.")
    password_env: str = _f("XSDDKVM_PASSWORD", "Environment variable holding the XenAPI password.")
    password_file: Optional[str] = _f(
        None, "File holding the password (mode 0600 or stricter); relative to the playbook."
    )
    password_prompt: bool = _f(
        False, "Ask for the password on the terminal when no other source has it."
    )
    tls_fingerprint: Optional[str] = _f(
        None,
        "SHA-256 fingerprint of the host certificate to pin (`xsddkvm host fingerprint URL` prints it).",
    )
    insecure: bool = _f(False, "Skip TLS verification entirely (warns; prefer tls_fingerprint).")
    ca_bundle: Optional[str] = _f(
        None, "CA bundle to verify the host certificate with, instead of the system store."
    )
    timeout: float = _f(60.0, "Seconds before any single XenAPI call is abandoned.")


@dataclasses.dataclass
class ImageConfig:
    source: str = _f(
        "sim:8.2.1",
        "DDK image: a `.xva` file, a DDK `.iso` as Citrix ships it, `template:<uuid>` for an existing template, or `sim:<version>` for a simulated DDK generated on demand.",
    )
    golden: Literal["auto", "never"] = _f(
        "auto",
        "`auto`: clone a prepared golden template whose image digest matches (see `xsddkvm image prepare`); `never`: always import.",
    )


@dataclasses.dataclass
class VmConfig:
    sr: Optional[str] = _f(
        None, "SR (name label or UUID) for the DDK disks; default: the pool's default SR."
    )
    network: Optional[str] = _f(
        None,
        "Network (name label, bridge or UUID) for the DDK's NIC; default: the management network.",
    )
    memory_mib: int = _f(2048, "Memory of the DDK VM in MiB.")
    vcpus: int = _f(2, "Virtual CPUs of the DDK VM.")
    first_boot: Literal["console", "noninteractive"] = _f(
        "console",
        "`console`: answer the DDK's first-boot password dialog on the XenAPI console; `noninteractive`: boot with PV_args=noninteractive, log in with the DDK's default password and replace it at once over SSH.",
    )
    default_password_env: str = _f(
        "XSDDKVM_DDK_DEFAULT_PASSWORD",
        "With first_boot: noninteractive, the variable holding the DDK's baked-in root password (`xensource` on Citrix DDKs when unset).",
    )
    ssh_port: int = _f(22, "SSH port of the DDK guest.")


@dataclasses.dataclass
class SourceConfig:
    dir: str = _f("src", "Local driver source directory, relative to the playbook.")
    remote_dir: str = _f("xsddkvm-build", "Build directory in the DDK, relative to root's home.")
    exclude: list[str] = _f([".git", "*.iso", "*.pyc"], "Glob patterns of files not to push.")
    max_mib: int = _f(512, "Refuse source trees larger than this many MiB (a likely mistake).")


@dataclasses.dataclass
class Responder:
    prompt: str = _f("", "Regular expression matching a question the build asks.")
    answer_env: str = _f(
        "", "Environment variable holding the answer (never written in the playbook)."
    )


@dataclasses.dataclass
class BuildConfig:
    targets: list[str] = _f(
        ["build-srctarballs", "build-iso"], "make targets run in order in the source directory."
    )
    make: str = _f("make", "The make command.")
    responders: list[Responder] = _f(
        [],
        "Answers to questions a target asks (e.g. a GPG passphrase); any other question fails the build at once.",
    )
    prompt_timeout: float = _f(
        10.0, "Seconds a target may wait at an unanswered prompt before it is stopped."
    )


@dataclasses.dataclass
class ArtifactsConfig:
    patterns: list[str] = _f(
        ["*.iso", "*.iso.md5", "*.metadata.md5"], "Files fetched from the build directory."
    )
    output_dir: str = _f(
        "out",
        "Local directory for artifacts, build.log and manifest.json (relative to the current directory).",
    )


@dataclasses.dataclass
class VerifyConfig:
    enabled: bool = _f(
        True,
        "After the build, install the built RPMs in the DDK and load/unload the declared modules.",
    )
    modules: list[str] = _f(
        [], "Kernel modules the pack must load (empty: none are loaded, RPMs are still installed)."
    )


@dataclasses.dataclass
class TimeoutsConfig:
    import_: float = dataclasses.field(
        default=3600.0,
        metadata={"doc": "Seconds for the image upload and import.", "key": "import"},
    )
    boot: float = _f(600.0, "Seconds for the DDK to boot and its console to answer.")
    ip: float = _f(300.0, "Seconds for the guest to report an IP address.")
    ssh: float = _f(120.0, "Seconds for SSH to accept connections.")
    build: float = _f(7200.0, "Seconds for each make target.")


@dataclasses.dataclass
class TargetConfig:
    installer: Optional[str] = _f(
        None,
        "Build a driver disk for this installer release (e.g. `7.1.0`) instead of the live host: the DDK must match the release's base kernel.",
    )


@dataclasses.dataclass
class Playbook:
    host: HostConfig = dataclasses.field(
        default_factory=HostConfig, metadata={"doc": "Where to build."}
    )
    image: ImageConfig = dataclasses.field(
        default_factory=ImageConfig, metadata={"doc": "Which DDK to build in."}
    )
    vm: VmConfig = dataclasses.field(
        default_factory=VmConfig, metadata={"doc": "The throwaway DDK VM."}
    )
    source: SourceConfig = dataclasses.field(
        default_factory=SourceConfig, metadata={"doc": "The driver source to push."}
    )
    build: BuildConfig = dataclasses.field(
        default_factory=BuildConfig, metadata={"doc": "How to build."}
    )
    artifacts: ArtifactsConfig = dataclasses.field(
        default_factory=ArtifactsConfig, metadata={"doc": "What to fetch back."}
    )
    verify: VerifyConfig = dataclasses.field(
        default_factory=VerifyConfig, metadata={"doc": "Smoke test of the built pack in the DDK."}
    )
    timeouts: TimeoutsConfig = dataclasses.field(
        default_factory=TimeoutsConfig, metadata={"doc": "Limits on each wait."}
    )
    target: TargetConfig = dataclasses.field(
        default_factory=TargetConfig, metadata={"doc": "What the pack is for."}
    )
    path: Path = dataclasses.field(default=Path("playbook.yml"), metadata={"internal": True})

    def resolve(self, relative: str) -> Path:
        """A path from the playbook, made absolute against the playbook's folder."""
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else (self.path.parent / p).resolve()


def key_of(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("key", field.name))


def public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _describe(value: Any) -> str:
    return (
        f"{type(value).__name__} {value!r}"
        if not isinstance(value, (dict, list))
        else type(value).__name__
    )


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if value is None:
            return None
        return _convert(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: expected one of {choices}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported schema type {hint!r}")


def _build(cls: Any, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {key_of(f): f for f in public_fields(cls)}
    prefix = " " if where.endswith(":") else "."
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(fields)}."
            raise ConfigError(
                f"{where}{prefix}{key}: unknown key; {hint}",
                "See docs/playbook.md for every key and its meaning.",
            )
    values = {}
    for key, field in fields.items():
        if key in data:
            sub = f"{where} {key}" if where.endswith(":") else f"{where}.{key}"
            values[field.name] = _convert(data[key], hints[field.name], sub)
    return cls(**values)


def load_playbook(path: Path) -> Playbook:
    """Read and validate a playbook; every error names the file and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such playbook.",
            "Check the path, or create one with `xsddkvm init`.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc}).", "Check the file's permissions and encoding."
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}:{line}: not valid YAML ({problem}).",
            "Fix the syntax there; YAML is indentation-sensitive and needs spaces, not tabs.",
        ) from None
    playbook = _build(Playbook, data, f"{path}:")
    playbook.path = path.resolve()
    _check(playbook)
    return playbook


def _check(pb: Playbook) -> None:
    where = f"{pb.path}:"
    if pb.vm.memory_mib < 256:
        raise ConfigError(
            f"{where} vm.memory_mib: {pb.vm.memory_mib} MiB is too little for a DDK.",
            "Use at least 512.",
        )
    if not 1 <= pb.vm.vcpus <= 64:
        raise ConfigError(f"{where} vm.vcpus: expected 1 to 64, got {pb.vm.vcpus}.")
    if not pb.build.targets:
        raise ConfigError(
            f"{where} build.targets: empty.", "List at least one make target, e.g. build-iso."
        )
    if not pb.artifacts.patterns:
        raise ConfigError(
            f"{where} artifacts.patterns: empty.", "List the files to fetch, e.g. '*.iso'."
        )
    if pb.source.remote_dir.startswith("/") or ".." in Path(pb.source.remote_dir).parts:
        raise ConfigError(
            f"{where} source.remote_dir: {pb.source.remote_dir!r} must be relative to root's home in the DDK.",
            "Use a plain relative path such as xsddkvm-build.",
        )
    for i, responder in enumerate(pb.build.responders):
        if not responder.prompt or not responder.answer_env:
            raise ConfigError(f"{where} build.responders[{i}]: needs both prompt and answer_env.")
    url = pb.host.url
    if not (url.startswith("https://") or url.startswith("http://") or url.startswith("sim://")):
        raise ConfigError(
            f"{where} host.url: {url!r} is not a host URL.",
            "Use https://<pool master> or sim://default.",
        )


def apply_overrides(pb: Playbook, **overrides: Any) -> Playbook:
    """Command-line flags win over the file; ``None`` means "not given"."""
    if overrides.get("host"):
        pb.host.url = overrides["host"]
    if overrides.get("insecure"):
        pb.host.insecure = True
    if overrides.get("output_dir"):
        pb.artifacts.output_dir = str(overrides["output_dir"])
    if overrides.get("fresh"):
        pb.image.golden = "never"
    return pb


def read_secret_file(path: Path, what: str) -> Secret:
    """A secret from a file that only its owner can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AuthError(
            f"The {what} file {path} does not exist.",
            "Create it, or use the environment variable instead.",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(
            f"The {what} file {path} can be read by other users (mode {stat.S_IMODE(mode):04o}).",
            f"Run `chmod 600 {path}` and try again.",
        )
    return Secret(path.read_text(encoding="utf-8").strip())


def resolve_password(pb: Playbook, prompt: Optional[Callable[[str], str]] = None) -> Secret:
    """The host password: environment variable, then file, then a prompt if allowed."""
    value = os.environ.get(pb.host.password_env)
    if value:
        return Secret(value)
    if pb.host.password_file:
        return read_secret_file(pb.resolve(pb.host.password_file), "password")
    if pb.host.password_prompt and prompt is not None:
        return Secret(prompt(f"Password for {pb.host.username} on {pb.host.url}: "))
    raise AuthError(
        f"No password for {pb.host.username} on {pb.host.url}: ${pb.host.password_env} is not set"
        + (" and no password_file is configured." if not pb.host.password_file else "."),
        f"Export {pb.host.password_env}, or set host.password_file (mode 0600), or host.password_prompt: true.",
    )
