"""One exception tree. Every message says what happened; every hint says what to do next."""

from __future__ import annotations

from typing import Optional, Sequence

from .exit_codes import ExitCode
from .secrets import redact


class XsddkvmError(Exception):
    """Base of every error xsddkvm raises on purpose.

    ``message`` says what happened in the user's terms, ``hint`` what to do next.
    Both are redacted of every known secret before they are stored.
    """

    exit_code: ExitCode = ExitCode.INTERNAL
    kind = "error"

    def __init__(
        self,
        message: str,
        hint: Optional[str] = None,
        code: str = "",
        params: Sequence[str] = (),
    ) -> None:
        self.message = redact(message)
        self.hint = redact(hint) if hint else None
        self.code = code  # the host's XenAPI error code, when a host failure caused this
        self.params = [redact(str(p)) for p in params]
        super().__init__(self.message)

    def paragraph(self) -> str:
        """The one-paragraph text shown to the user."""
        return f"{self.message} {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "kind": self.kind,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "hint": self.hint,
        }
        if self.code:
            data.update(xapi_code=self.code, xapi_params=self.params)
        return data


class ConfigError(XsddkvmError):
    """A playbook, scenario or config file is wrong; the message names ``file: key.path``."""

    exit_code = ExitCode.CONFIG
    kind = "config"


class HostUnreachableError(XsddkvmError):
    exit_code = ExitCode.HOST_UNREACHABLE
    kind = "host-unreachable"


class AuthError(XsddkvmError):
    exit_code = ExitCode.AUTH
    kind = "auth"


class TLSError(XsddkvmError):
    exit_code = ExitCode.TLS
    kind = "tls"


class HostAPIError(XsddkvmError):
    """A XenAPI call failed; ``code`` and ``params`` are the host's ErrorDescription."""

    exit_code = ExitCode.HOST_API
    kind = "host-api"


class StorageError(HostAPIError):
    exit_code = ExitCode.STORAGE
    kind = "storage"


class ImageError(XsddkvmError):
    exit_code = ExitCode.IMAGE
    kind = "image"


class ConsoleError(XsddkvmError):
    exit_code = ExitCode.CONSOLE
    kind = "console"


class GuestError(XsddkvmError):
    exit_code = ExitCode.GUEST
    kind = "guest"


class TransferError(XsddkvmError):
    exit_code = ExitCode.TRANSFER
    kind = "transfer"


class BuildError(XsddkvmError):
    """A build command failed: carries the command, its exit code and the last log lines."""

    exit_code = ExitCode.BUILD
    kind = "build"

    def __init__(
        self,
        message: str,
        hint: Optional[str] = None,
        command: str = "",
        exit_status: Optional[int] = None,
        last_lines: Sequence[str] = (),
    ) -> None:
        super().__init__(message, hint)
        self.command = redact(command)
        self.exit_status = exit_status
        self.last_lines = [redact(line) for line in last_lines]

    def paragraph(self) -> str:
        text = super().paragraph()
        if self.last_lines:
            tail = "\n".join("    " + line for line in self.last_lines)
            text += f"\nLast {len(self.last_lines)} lines of output:\n{tail}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "command": self.command,
            "exit_status": self.exit_status,
            "last_lines": self.last_lines,
        }


class ArtifactError(XsddkvmError):
    exit_code = ExitCode.ARTIFACT
    kind = "artifact"


class VerifyError(BuildError):
    exit_code = ExitCode.VERIFY
    kind = "verify"


class CleanupError(XsddkvmError):
    exit_code = ExitCode.CLEANUP
    kind = "cleanup"


class MismatchError(XsddkvmError):
    exit_code = ExitCode.MISMATCH
    kind = "ddk-mismatch"


class InstallError(HostAPIError):
    exit_code = ExitCode.INSTALL
    kind = "install"


class Interrupted(KeyboardInterrupt):
    """The user or the system asked us to stop (SIGINT or SIGTERM).

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except Exception`` on the
    way up can swallow it; the pipeline still undoes everything in its ``finally``.
    """

    kind = "interrupted"

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        name = signal.Signals(signum).name
        self.message = f"Stopped by {name}; everything created so far was removed."
        self.hint: Optional[str] = "Run the same command again when you are ready."
        self.exit_code = ExitCode.TERMINATED if name == "SIGTERM" else ExitCode.INTERRUPTED
        super().__init__(self.message)

    def paragraph(self) -> str:
        return f"{self.message} {self.hint}"

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "kind": self.kind,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "hint": self.hint,
        }
        return data
