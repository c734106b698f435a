"""Stage: push the driver source as one tar stream into the remote build directory."""

from __future__ import annotations

import fnmatch
import hashlib
import shlex
from pathlib import Path
from typing import Callable

from ..config import Playbook
from ..errors import ConfigError
from ..events import Progress
from .context import BuildContext


def excluder(patterns: list[str]) -> Callable[[Path], bool]:
    def excluded(path: Path) -> bool:
        return any(fnmatch.fnmatch(part, p) for part in path.parts for p in patterns)

    return excluded


def source_files(root: Path, patterns: list[str]) -> list[Path]:
    excluded = excluder(patterns)
    return sorted(p for p in root.rglob("*") if p.is_file() and not excluded(p.relative_to(root)))


def source_digest(root: Path, files: list[Path]) -> str:
    """SHA-256 over relative paths and contents: changes when any pushed byte changes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def check_source(pb: Playbook) -> tuple[Path, list[Path]]:
    """The source tree, validated (exists, not empty, not huge) before anything is created."""
    root = pb.resolve(pb.source.dir)
    where = f"{pb.path}: source.dir"
    if not root.is_dir():
        raise ConfigError(
            f"{where}: {root} is not a directory.",
            "Point source.dir at your driver's source tree (relative to the playbook), or run "
            "`xsddkvm init` to create a skeleton.",
        )
    files = source_files(root, pb.source.exclude)
    if not files:
        raise ConfigError(
            f"{where}: {root} holds no files to build (after source.exclude).",
            "Add your driver's Makefile and sources there.",
        )
    size = sum(p.stat().st_size for p in files)
    if size > pb.source.max_mib * 2**20:
        raise ConfigError(
            f"{where}: {root} holds {size // 2**20} MiB, more than source.max_mib "
            f"({pb.source.max_mib} MiB).",
            "Exclude build outputs with source.exclude, or raise source.max_mib if this is right.",
        )
    return root, files


class PushSource:
    name = "push"
    description = "copy the driver source into the DDK"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        root, files = check_source(ctx.playbook)
        ctx.source_digest = source_digest(root, files)
        remote = ctx.playbook.source.remote_dir
        ctx.ssh.run(f"rm -rf {shlex.quote(remote)}")
        ctx.ssh.put_tree(
            root,
            remote,
            on_progress=lambda done, total: ctx.emit(Progress("push", done, total)),
            exclude=excluder(ctx.playbook.source.exclude),
        )

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: the files live in the throwaway VM."""
