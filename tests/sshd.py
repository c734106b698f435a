"""A real OpenSSH sshd on loopback for interop tests and benchmarks (env-probe.md §3).

``RealSshd("modern" | "legacy", tmpdir)`` writes its own host keys, config and authorized
keys under ``tmpdir``, runs ``sshd -D -e`` as a child in its own session and is stopped by PID.
The legacy profile is the closest OpenSSH 9.2 gets to CentOS 5's OpenSSH 4.3: RSA host key
only, SHA-1 key exchanges, ``ssh-rsa`` signatures, CBC/CTR ciphers, hmac-md5/sha1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
START_TIMEOUT = 10.0

LEGACY = (
    "KexAlgorithms diffie-hellman-group-exchange-sha1,diffie-hellman-group14-sha1,"
    "diffie-hellman-group1-sha1\n"
    """\
HostKeyAlgorithms ssh-rsa
PubkeyAcceptedAlgorithms ssh-rsa
Ciphers aes128-cbc,3des-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr
MACs hmac-md5,hmac-sha1,hmac-sha1-96,hmac-md5-96
"""
)


def skip_reason() -> Optional[str]:
    """Why a real sshd cannot run here (None when it can)."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "a root-login sshd must run as root"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def keygen(path: Path, kind: str = "rsa") -> Path:
    """An unencrypted key pair at ``path`` / ``path.pub`` (PEM for RSA: every paramiko reads it)."""
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)]
    if kind == "rsa":
        args += ["-b", "2048", "-m", "PEM"]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    return path


class RealSshd:
    """One sshd listening on ``host:port`` with the given algorithm profile."""

    def __init__(
        self,
        profile: str,
        tmpdir: Path,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        extra_config: str = "",
    ) -> None:
        if profile not in ("modern", "legacy"):
            raise ValueError(f"unknown sshd profile {profile!r}")
        self.profile, self.host, self.extra_config = profile, host, extra_config
        self.port = port or free_port(host)
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "sshd.log"
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self.host_rsa = keygen(self.dir / "host_rsa")
        host_keys = [self.host_rsa]
        if profile == "modern":
            host_keys.insert(0, keygen(self.dir / "host_ed25519", "ed25519"))
        (self.dir / "authorized").mkdir(exist_ok=True)
        self.config = self.dir / "sshd_config"
        self.config.write_text(self._config(host_keys))

    @property
    def host_key_line(self) -> str:
        """The RSA host public key as ``ssh-rsa AAAA...``, as the DDK console would show it."""
        return self.host_rsa.with_suffix(".pub").read_text().strip()

    def authorize(self, public_key_line: str, user: str = "root") -> None:
        with open(self.dir / "authorized" / user, "a") as f:
            f.write(public_key_line.strip() + "\n")

    def _config(self, host_keys: list[Path]) -> str:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            *(f"HostKey {k}" for k in host_keys),
            f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no",
            "PermitRootLogin yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            f"AuthorizedKeysFile {self.dir / 'authorized'}/%u",
            "StrictModes no",  # /tmp is 1777: StrictModes would refuse the key file's path
            f"Subsystem sftp {SFTP_SERVER}",
            "MaxStartups 100",
        ]
        legacy = LEGACY if self.profile == "legacy" else ""
        return "\n".join(lines) + "\n" + legacy + self.extra_config

    def start(self, wait: bool = True) -> RealSshd:
        # sshd refuses to start without its privilege separation directory (env-probe.md §2).
        os.makedirs("/run/sshd", exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from now on
        with log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the port accepts connections; fail with sshd's log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log_path.read_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd not listening after {timeout} s: {self.log_path.read_text()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> RealSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
