"""put_tree and get against a real sshd (the "guest" filesystem is this machine's)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from xsddkvm.errors import TransferError
from xsddkvm.guest.ssh import GuestSSH


def make_tree(root: Path, files: int = 300) -> None:
    for i in range(files):
        path = root / f"d{i % 7}" / f"sub{i % 3}" / f"file-{i}.c"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(i * 37 % 5000))
    (root / "build.sh").write_text("#!/bin/sh\nmake\n")
    (root / "build.sh").chmod(0o755)
    (root / ("a" * 120)).write_text("a long name needs a GNU long-name header\n")
    (root / "empty-dir").mkdir()
    (root / "link").symlink_to("build.sh")


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", 0, os.readlink(path).encode())
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", 0, b"")
        else:
            found[str(path.relative_to(root))] = ("file", st.st_mode & 0o777, path.read_bytes())
    return found


def test_put_tree_copies_every_file_in_one_stream(guest: GuestSSH, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "remote" / "with space"
    make_tree(src)
    progress: list[tuple[int, int]] = []
    sent = guest.put_tree(src, str(dest), on_progress=lambda d, t: progress.append((d, t)))
    assert snapshot(dest) == snapshot(src)
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    assert sent == total and progress[-1] == (total, total)
    assert all(t == total for _, t in progress)


def test_put_tree_exclude_prunes(guest: GuestSSH, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, files=20)
    guest.put_tree(src, str(dest), exclude=lambda rel: rel.parts[0] in ("d1", "link"))
    assert not (dest / "d1").exists() and not (dest / "link").exists()
    assert (dest / "d2" / "sub2" / "file-2.c").read_bytes() == (
        src / "d2/sub2/file-2.c"
    ).read_bytes()


def test_put_tree_failure_carries_remote_stderr(guest: GuestSSH, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=3)
    with pytest.raises(TransferError, match="mkdir"):
        guest.put_tree(src, "/dev/null/cannot")


def test_get_is_atomic_and_returns_digests(guest: GuestSSH, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    remote = tmp_path / "remote.iso"
    remote.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    progress: list[int] = []
    size, md5, sha256 = guest.get(str(remote), out / "pack.iso", lambda d, t: progress.append(d))
    assert (size, md5, sha256) == (
        len(data),
        hashlib.md5(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )
    assert (out / "pack.iso").read_bytes() == data
    assert os.listdir(out) == ["pack.iso"] and progress[-1] == len(data)


def test_get_missing_file_leaves_nothing(guest: GuestSSH, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file"):
        guest.get(str(tmp_path / "missing"), tmp_path / "x.iso")
    assert os.listdir(tmp_path) == []


def test_get_interrupted_midway_removes_the_partial_file(guest: GuestSSH, tmp_path: Path) -> None:
    remote = tmp_path / "big.bin"
    remote.write_bytes(os.urandom(2 * 1024 * 1024))
    out = tmp_path / "out"
    out.mkdir()

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guest.get(str(remote), out / "big.bin", stop)
    assert os.listdir(out) == []


def test_listdir_and_read_text(guest: GuestSSH, tmp_path: Path) -> None:
    (tmp_path / "b.rpm").write_text("x")
    (tmp_path / "a.txt").write_text("héllo\n")
    assert guest.listdir(str(tmp_path)) == ["a.txt", "b.rpm"]
    assert guest.read_text(str(tmp_path / "a.txt")) == "héllo\n"
    with pytest.raises(TransferError):
        guest.listdir(str(tmp_path / "nope"))
