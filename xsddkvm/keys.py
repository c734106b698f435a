"""xsddkvm's own SSH key pair (``id_rsa`` + ``id_rsa.pub`` in the data dir) for golden DDKs.

RSA, because the oldest DDKs run OpenSSH 4.3, which accepts only ``ssh-rsa`` user keys
(/work/shared/reference/env-probe.md §3); 3072 bits, OpenSSH's default size for RSA.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Optional

import paramiko

from .errors import AuthError

KEY_NAME = "id_rsa"
KEY_BITS = 3072
COMMENT = "xsddkvm"
_create_lock = threading.Lock()  # nightly builds may ask for the key from several threads


def _default_dir() -> Path:
    from .build import data_dir

    return data_dir()


def key_path(directory: Optional[Path] = None) -> Path:
    return (directory or _default_dir()) / KEY_NAME


def public_line(key: paramiko.PKey) -> str:
    """The ``ssh-rsa AAAA... xsddkvm`` line for ``authorized_keys``."""
    return f"{key.get_name()} {key.get_base64()} {COMMENT}"


def ensure_key(directory: Optional[Path] = None) -> paramiko.RSAKey:
    """The key pair, created on first use (private key mode 0600, written atomically)."""
    path = key_path(directory)
    with _create_lock:
        if not path.exists():
            key = paramiko.RSAKey.generate(KEY_BITS)
            tmp = path.with_name(f".{KEY_NAME}.part-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                key.write_private_key(f)
            pub = path.with_name(f"{KEY_NAME}.pub")
            pub.write_text(public_line(key) + "\n", encoding="ascii")
            os.replace(tmp, path)
            return key
    return load_key(directory)


def load_key(directory: Optional[Path] = None) -> paramiko.RSAKey:
    """The existing private key; refuses a missing key or one other users can read."""
    path = key_path(directory)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AuthError(
            f"xsddkvm's SSH key {path} does not exist, so golden DDK templates cannot be reached.",
            "Run `xsddkvm image prepare PLAYBOOK` again to create the key and a new template, "
            "or build with --fresh.",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(
            f"xsddkvm's SSH key {path} can be read by other users (mode {stat.S_IMODE(mode):04o}).",
            f"Run `chmod 600 {path}` and try again.",
        )
    try:
        return paramiko.RSAKey.from_private_key_file(str(path))
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise AuthError(
            f"xsddkvm's SSH key {path} cannot be read ({exc}).",
            f"Remove {path} and run `xsddkvm image prepare PLAYBOOK` to make a new key and template.",
        ) from None
