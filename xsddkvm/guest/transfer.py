"""File transfer over an SSH connection: a tree as one tar stream, a file via SFTP, atomically.

A tar stream over an exec channel costs one round trip for the whole tree, where SFTP costs
3-4 per file (env-probe.md §4); downloads use SFTP ``getfo`` with paramiko's default unlimited
prefetch, since a small ``max_concurrent_prefetch_requests`` collapses to ~5 MB/s.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shlex
import tarfile
from pathlib import Path
from typing import IO, Any, Callable, Optional, cast

import paramiko

from ..errors import ArtifactError, TransferError

Progress = Callable[[int, int], None]
Exclude = Callable[[Path], bool]
CHUNK = 64 * 1024
RECV = 1 << 20
TAR_BUFFER = 1 << 20
SSH_ERRORS = (OSError, EOFError, paramiko.SSHException)


def send_tree(
    chan: paramiko.Channel,
    local_dir: Path,
    remote_dir: str,
    where: str,
    timeout: float,
    on_progress: Optional[Progress] = None,
    exclude: Optional[Exclude] = None,
) -> int:
    """Unpack ``local_dir``'s contents into ``remote_dir`` on ``chan``; returns the file bytes."""
    entries = _walk(Path(local_dir), exclude)
    total = sum(p.lstat().st_size for p, _ in entries if p.is_file() and not p.is_symlink())
    done = 0

    def count(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    quoted = shlex.quote(remote_dir)
    failure: Optional[BaseException] = None
    try:
        # Uncompressed: GNU tar reading a pipe does not detect gzip by itself (env-probe.md §3).
        chan.exec_command(f"mkdir -p {quoted} && tar --no-same-owner -x -C {quoted}")
        _send_tar(_ChannelWriter(chan), entries, count)
        chan.shutdown_write()
    except SSH_ERRORS as exc:
        failure = exc  # the remote tar's stderr, read below, usually says why
    stderr, status = _drain(chan, timeout)
    if status != 0 or failure is not None:
        detail = stderr.strip() or (str(failure) if failure else f"exit status {status}")
        raise TransferError(
            f"Copying {local_dir} to {where}:{remote_dir} failed: {detail}",
            "Check free space and permissions in the guest (df -h; ls -ld the target).",
        )
    return total


def download(
    sftp: paramiko.SFTPClient,
    remote_path: str,
    local_path: Path,
    where: str,
    on_progress: Optional[Progress] = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Fetch into a ``.part-*`` file, then rename; returns (size, md5 hex, sha256 hex).

    The bytes come from ``cat`` on an exec channel, read 1 MiB at a time: as fast as scp,
    where SFTP's 32 KiB requests are not (env-probe.md §4); SFTP only stats the file first.
    """
    local_path = Path(local_path)
    part = local_path.with_name(f"{local_path.name}.part-{secrets.token_hex(4)}")
    try:
        raw = open(part, "wb")  # noqa: SIM115 - closed by the with below, before the rename
    except OSError as exc:
        raise ArtifactError(
            f"Cannot write {local_path}: {exc.strerror}.",
            "Choose an output directory you can write to.",
        ) from None
    md5, sha256 = hashlib.md5(), hashlib.sha256()  # noqa: S324 - md5 is the pack format's own
    try:
        with raw:
            size = int(sftp.stat(remote_path).st_size or 0)
            transport = sftp.get_channel().get_transport()  # type: ignore[union-attr]
            chan = transport.open_session()
            chan.settimeout(timeout)
            chan.exec_command(f"cat -- {shlex.quote(remote_path)}")
            done = 0
            while data := chan.recv(RECV):
                raw.write(data)
                md5.update(data)
                sha256.update(data)
                done += len(data)
                if on_progress:
                    on_progress(done, size)
            stderr, status = _drain(chan, timeout)
            if status != 0 or done != size:
                raise TransferError(
                    f"Fetching {remote_path} from {where} stopped after {done} of {size} bytes "
                    f"({stderr.strip() or f'exit status {status}'}).",
                    "Check that the DDK VM is still running, then run the build again.",
                )
        os.replace(part, local_path)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise ArtifactError(
                f"Cannot write {local_path}: {exc.strerror}.",
                "Free space on that disk, or choose another output directory with -o DIR.",
            ) from None
        if isinstance(exc, SSH_ERRORS):
            raise transfer_error(f"Fetching {remote_path}", where, exc) from exc
        raise
    return size, md5.hexdigest(), sha256.hexdigest()


def transfer_error(what: str, where: str, exc: BaseException) -> TransferError:
    if isinstance(exc, FileNotFoundError):
        return TransferError(
            f"{what} on {where} failed: no such file or directory.",
            "Check the path in the playbook (artifacts are looked up after the build).",
        )
    return TransferError(
        f"{what} on {where} failed: {exc}.",
        "Check that the DDK VM is still running and its disk is not full.",
    )


def _walk(root: Path, exclude: Optional[Exclude]) -> list[tuple[Path, str]]:
    """(path, archive name) below ``root`` in a stable order; excluded directories are pruned."""
    if not root.is_dir():
        raise TransferError(f"{root} is not a directory.", "Check the playbook's source path.")
    found: list[tuple[Path, str]] = []
    for top, dirs, files in os.walk(root):
        rel = Path(top).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not (exclude and exclude(rel / d)))
        kept = dirs + sorted(f for f in files if not (exclude and exclude(rel / f)))
        found.extend((Path(top) / name, (rel / name).as_posix()) for name in kept)
    return found


def _send_tar(
    writer: _ChannelWriter, entries: list[tuple[Path, str]], count: Callable[[int], None]
) -> None:
    # GNU format: long names as ././@LongLink, which every GNU tar (CentOS 5's 1.15 too) reads.
    # 1 MiB writes: fewer, fuller SSH packets than tarfile's default 10 KiB records.
    tar = tarfile.open(
        fileobj=cast(Any, writer), mode="w|", format=tarfile.GNU_FORMAT, bufsize=TAR_BUFFER
    )
    with tar:
        for path, arcname in entries:
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, cast(IO[bytes], _CountingReader(f, count)))
            else:
                tar.addfile(info)


def _drain(chan: paramiko.Channel, timeout: float) -> tuple[str, int]:
    """The remote command's stderr and exit status, waiting at most ``timeout``."""
    chan.settimeout(timeout)
    stderr = b""
    try:
        while data := chan.recv_stderr(CHUNK):
            stderr += data
    except SSH_ERRORS:
        pass  # a dead channel: the exit status below is -1 and says enough
    status = chan.recv_exit_status() if chan.status_event.wait(timeout) else -1
    chan.close()
    return stderr.decode("utf-8", "replace")[-4000:], status


class _ChannelWriter:
    def __init__(self, chan: paramiko.Channel) -> None:
        self._chan = chan

    def write(self, data: bytes) -> int:
        self._chan.sendall(data)
        return len(data)


class _CountingReader:
    def __init__(self, f: IO[bytes], count: Callable[[int], None]) -> None:
        self._f, self._count = f, count

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._count(len(data))
        return data
