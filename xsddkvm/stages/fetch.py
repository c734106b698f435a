"""Stage: fetch the pack, verify its md5s locally, publish atomically, write manifest.json."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..errors import ArtifactError
from ..events import ArtifactFetched, Progress
from ..pack import verify_iso_md5, verify_metadata_md5
from .context import BuildContext


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def verify_pack(files: dict[str, Path], md5s: Optional[dict[str, str]] = None) -> dict[str, bool]:
    """Check every md5 file against what it describes; returns name -> verified.

    ``md5s`` holds digests already computed while the files were fetched.
    """
    md5s = md5s or {}
    verified: dict[str, bool] = {}
    isos = {n: p for n, p in files.items() if n.endswith(".iso")}
    if not isos:
        raise ArtifactError(
            "The build produced no .iso file matching artifacts.patterns.",
            "Check that the last make target builds the pack (e.g. build-iso) in source.remote_dir.",
        )
    for name, path in files.items():
        if name.endswith(".iso.md5") and name[: -len(".md5")] in isos:
            iso_name = name[: -len(".md5")]
            verify_iso_md5(isos[iso_name], path, md5s.get(iso_name))
            verified[name] = verified[name[: -len(".md5")]] = True
        elif name.endswith(".metadata.md5"):
            iso = isos.get(name[: -len(".metadata.md5")] + ".iso") or next(iter(isos.values()))
            verify_metadata_md5(iso, path)
            verified[name] = True
    return verified


class FetchArtifacts:
    name = "fetch"
    description = "fetch and verify the pack"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        pb = ctx.playbook
        remote = pb.source.remote_dir
        names = sorted(
            n
            for n in ctx.ssh.listdir(remote)
            if any(fnmatch.fnmatch(n, p) for p in pb.artifacts.patterns)
        )
        if not names:
            raise ArtifactError(
                f"No file in {remote} in the DDK matches artifacts.patterns {pb.artifacts.patterns}.",
                "Check the patterns against what your build-iso target writes (see build.log).",
            )
        ctx.staging_dir = ctx.output_dir / f".xsddkvm-{ctx.identity.build_id}.part"
        ctx.staging_dir.mkdir(parents=True, exist_ok=False)
        fetched: dict[str, Path] = {}
        digests: dict[str, tuple[int, str, str]] = {}  # name -> (size, md5, sha256)
        try:
            for name in names:
                local = ctx.staging_dir / name
                digests[name] = ctx.ssh.get(
                    f"{remote}/{name}",
                    local,
                    on_progress=lambda done, total, n=name: ctx.emit(
                        Progress(f"fetch {n}", done, total)
                    ),
                )
                fetched[name] = local
            verified = verify_pack(fetched, {n: d[1] for n, d in digests.items()})
        except BaseException:
            self.undo(ctx)  # the pipeline undoes only finished stages: drop the staging here
            raise
        for name, path in fetched.items():
            size, md5, sha256 = digests[name]
            final = ctx.output_dir / name
            os.replace(path, final)
            ctx.artifacts.append(
                {
                    "name": name,
                    "path": str(final),
                    "size": size,
                    "md5": md5,
                    "sha256": sha256,
                    "verified": verified.get(name, False),
                }
            )
            ctx.emit(ArtifactFetched(str(final), size, md5, verified.get(name, False)))
        shutil.rmtree(ctx.staging_dir, ignore_errors=True)
        ctx.staging_dir = None
        write_json_atomic(ctx.output_dir / "manifest.json", manifest(ctx))

    def undo(self, ctx: BuildContext) -> None:
        if ctx.staging_dir is not None:
            shutil.rmtree(ctx.staging_dir, ignore_errors=True)
            ctx.staging_dir = None


def manifest(ctx: BuildContext) -> dict[str, Any]:
    """What was built, where and how: no secrets, only facts."""
    return {
        "xsddkvm_version": __version__,
        "build_id": ctx.identity.build_id,
        "host": {"url": ctx.xs.url, **ctx.host_facts},
        "ddk": {
            **ctx.ddk,
            "image": ctx.image.label,
            "image_sha256": ctx.image.digest,
            "golden_template": ctx.cloned_from_template,
        },
        "source": {
            "dir": str(ctx.playbook.resolve(ctx.playbook.source.dir)),
            "sha256": ctx.source_digest,
        },
        "targets": ctx.playbook.build.targets,
        "files": ctx.artifacts,
        "verification": ctx.verification,
        "durations_s": ctx.timings,
    }
