"""A guest's filesystem on the simulator's disk, and the commands that run "inside" it.

The sandbox is a directory, not an isolation boundary: commands run as the simulator's user with
``/bin/sh -c`` and an environment that points them at the guest's files (docs/architecture.md,
"Guest disks and sandboxes").
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

SHADOW = "etc/xsddkvm-sim/shadow"
FIRST_BOOT_DONE = "etc/xsddkvm-sim/firstboot-done"

# The make_fails fault: a make that fails the way a broken DDK build does.
_FAILING_MAKE = """#!/bin/sh
echo "make: *** [build-iso] Error 2" >&2
exit 2
"""

# tool -> Debian/Ubuntu package that provides it
_HOST_TOOLS = {"make": "make", "rpmbuild": "rpm", "rpm2cpio": "rpm2cpio", "cpio": "cpio"}
_MISSING_TOOL = """#!/bin/sh
echo "{tool}: not installed on the machine running the xsddkvm simulator, which runs the \\
simulated DDK's builds with the machine's own tools. Install it (Debian/Ubuntu: \\
apt-get install {package}) and run the build again." >&2
exit 127
"""


class Sandbox:
    """The guest filesystem rooted at ``root``; ``simbin`` is this guest's first PATH entry."""

    def __init__(self, root: Path, simbin: Path) -> None:
        self.root = root
        self.home = root / "root"
        self.simbin = simbin
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def prepare(self, make_fails: bool = False) -> None:
        """Create ``$HOME`` and the simbin directory (python3 link, optional failing make)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.simbin.mkdir(parents=True, exist_ok=True)
        python3 = self.simbin / "python3"
        if not python3.is_symlink():
            python3.symlink_to(sys.executable)
        make = self.simbin / "make"
        if make_fails:
            make.write_text(_FAILING_MAKE)
            make.chmod(0o755)
        elif make.exists():
            make.unlink()
        # The simulated DDK runs the machine's own build tools: say which one is missing.
        for tool, package in _HOST_TOOLS.items():
            shim = self.simbin / tool
            if shutil.which(tool) is None and not shim.exists():
                shim.write_text(_MISSING_TOOL.format(tool=tool, package=package))
                shim.chmod(0o755)

    def env(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        root = str(self.root)
        guest_path = [f"{root}/usr/local/bin", f"{root}/usr/bin", f"{root}/bin", f"{root}/usr/sbin"]
        env = {
            "HOME": str(self.home),
            "PATH": ":".join([str(self.simbin), *guest_path, os.environ.get("PATH", "")]),
            "XSDDKVM_SIM_ROOT": root,
            "LANG": "C",
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": "/bin/sh",
        }
        env.update(extra or {})
        return env

    # -- processes --------------------------------------------------------------------------
    def spawn(
        self,
        command: Optional[str],
        *,
        merge_stderr: bool = False,
        stdin: Optional[int] = subprocess.PIPE,
        env: Optional[dict[str, str]] = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``/bin/sh -c command`` (or a plain ``/bin/sh``) in its own process group."""
        argv = ["/bin/sh", "-c", command] if command is not None else ["/bin/sh"]
        with self._lock:
            if self._closed:
                raise OSError("the guest is shutting down")
            proc = subprocess.Popen(
                argv,
                cwd=self.home,
                env=self.env(env),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                start_new_session=True,  # own process group, so stop() can kill the whole tree
            )
            self._procs.add(proc)
        return proc

    def reap(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for ``proc`` and forget it; returns its exit status as a shell would."""
        status = proc.wait()
        with self._lock:
            self._procs.discard(proc)
        return 128 - status if status < 0 else status

    def run(
        self, command: str, on_output: Optional[Callable[[bytes], None]] = None
    ) -> tuple[int, bytes]:
        """Run with no stdin and stderr merged; output is returned (and streamed if asked)."""
        proc = self.spawn(command, merge_stderr=True, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        chunks = []
        while True:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            chunks.append(chunk)
            if on_output is not None:
                on_output(chunk)
        proc.stdout.close()
        return self.reap(proc), b"".join(chunks)

    def kill_all(self) -> None:
        """Kill every process group started here; no new command may start afterwards."""
        with self._lock:
            self._closed = True
            procs = list(self._procs)
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # -- guest paths ------------------------------------------------------------------------
    def resolve(self, guest_path: str) -> Path:
        """Map a guest path (absolute, or relative to /root) into the sandbox.

        ``..`` that would climb above the guest's ``/`` is refused with PermissionError, and so
        is a path whose symlinks lead out of the sandbox.
        """
        if not guest_path.startswith("/"):
            guest_path = "/root/" + guest_path
        parts: list[str] = []
        for part in guest_path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise PermissionError(errno.EACCES, "outside the guest filesystem", guest_path)
                parts.pop()
            else:
                parts.append(part)
        path = self.root.joinpath(*parts)
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise PermissionError(errno.EACCES, "leads outside the guest filesystem", guest_path)
        return path

    def guest_path(self, guest_path: str) -> str:
        """The normalised absolute guest path (what SFTP ``realpath`` answers)."""
        if not guest_path.startswith("/"):
            guest_path = "/root/" + guest_path
        return posixpath.normpath("/" + guest_path.lstrip("/"))

    def read_text(self, guest_path: str) -> Optional[str]:
        try:
            return (self.root / guest_path.lstrip("/")).read_text(errors="replace")
        except OSError:
            return None

    # -- accounts ---------------------------------------------------------------------------
    def set_password(self, password: str, user: str = "root") -> None:
        """Write ``user:<salt>:<sha256hex(salt+password)>`` into the guest's shadow file."""
        salt = secrets.token_hex(8)
        digest = hashlib.sha256((salt + password).encode()).hexdigest()
        lines = [ln for ln in self._shadow_lines() if not ln.startswith(user + ":")]
        lines.append(f"{user}:{salt}:{digest}")
        path = self.root / SHADOW
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def check_password(self, user: str, password: str) -> bool:
        for line in self._shadow_lines():
            name, _, rest = line.partition(":")
            salt, _, digest = rest.partition(":")
            if name == user and digest:
                given = hashlib.sha256((salt + password).encode()).hexdigest()
                return secrets.compare_digest(given, digest.strip())
        return False

    def _shadow_lines(self) -> list[str]:
        text = self.read_text(SHADOW) or ""
        return [line for line in text.splitlines() if line.strip()]

    @property
    def first_boot_done(self) -> bool:
        return (self.root / FIRST_BOOT_DONE).exists()

    def mark_first_boot_done(self) -> None:
        marker = self.root / FIRST_BOOT_DONE
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
