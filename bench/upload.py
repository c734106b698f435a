"""XVA upload and DDK ISO conversion: xsddkvm (in a child process, for its own peak RSS)
against ``curl -T`` of the same file to the same ``/import``, and the simulator alone."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from xsddkvm.image.ddk_iso import open_ddk_iso
from xsddkvm.sim.ddk_image import make_image
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi.session import XapiSession
from xsddkvm.xapi.tasks import destroy_task, wait_for_task
from xsddkvm.xapi.vm import destroy_with_disks, find_sr

from .common import MIB, Logger, Measure, Side, Sizes, interleaved, spawn, write_xva
from .sink import NullSink

CURL_SEND_CUT = (55, 56)  # the host may close once the disks are complete, before the padding


def xsddkvm_upload(server: SimServer, kind: str, path: Path) -> tuple[float, int, str, float]:
    """(seconds, bytes sent, VM ref, peak RSS MB) of one ``import_vm`` in a child process."""
    args = [sys.executable, "-m", "bench.upload_child", server.url, server.fingerprint]
    env = {**os.environ, "XSDDKVM_BENCH_PASSWORD": server.password}
    done = spawn([*args, server.username, kind, str(path)], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"xsddkvm upload failed: {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout)
    return out["seconds"], out["bytes"], out["vm"], max(out["peak_kib"] / 1024, done.peak_rss_mb)


def curl_upload(
    xs: XapiSession, path: Path, url: Optional[str] = None
) -> tuple[float, int, Optional[str], float]:
    """(seconds, bytes, VM ref, curl's peak RSS MB) of ``curl -T`` to ``/import`` (or ``url``),
    the task created first and waited for, as import_vm does."""
    started = time.perf_counter()
    task = None
    if url is None:
        task = xs.api.task.create("bench curl import", "")
        url = xs.http_url("/import", task_id=task, sr_id=find_sr(xs, None))
    # -H Expect: : curl would wait 1 s for a "100 Continue" that neither xapi nor we send
    args = ["curl", "-sS", "-k", "-H", "Expect:", "-T", str(path), "-o", "/dev/null"]
    args += ["--cookie", f"session_id={xs.handle}", "-w", "%{size_upload}", url]
    done = spawn(args)
    if done.returncode not in (0, *CURL_SEND_CUT) or (task is None and done.returncode):
        raise RuntimeError(f"curl exited {done.returncode}: {done.stderr.strip()}")
    vm = None
    if task is not None:
        try:
            result = wait_for_task(xs, task, action="curl import", timeout=600)
        finally:
            destroy_task(xs, task)
        vm = result[0] if isinstance(result, list) else result
    return time.perf_counter() - started, int(float(done.stdout or 0)), vm, done.peak_rss_mb


def _mbps(size: int, seconds: float) -> float:
    return size / MIB / seconds


def measure_upload(
    server: SimServer, xs: XapiSession, work: Path, sizes: Sizes, repeat: int, log: Logger
) -> list[Measure]:
    """XVA upload vs curl, and curl to the simulator vs curl to a null sink."""
    image = write_xva(work / "upload.xva", sizes.upload, noise=True)
    size = image.stat().st_size
    log(f"upload: {size / MIB:.0f} MiB XVA of pseudo-random data")
    ours, curl, sink = Side("xsddkvm import_vm"), Side("curl -T"), Side("curl -T to a null sink")
    rss: list[float] = []
    tls = server.data_dir / "tls"
    with NullSink(tls / "cert.pem", tls / "key.pem") as null:
        for i, ours_first in interleaved(repeat):
            for side in ("ours", "curl") if ours_first else ("curl", "ours"):
                if side == "ours":
                    seconds, sent, vm, peak = xsddkvm_upload(server, "xva", image)
                    rss.append(peak)
                    ours.samples.append(_mbps(sent, seconds))
                else:
                    seconds, _, curl_vm, _ = curl_upload(xs, image)
                    curl.samples.append(_mbps(size, seconds))
                    vm = str(curl_vm)
                destroy_with_disks(xs, vm)
            seconds, sent, _, _ = curl_upload(xs, image, null.url)
            if null.received != size:
                raise RuntimeError(f"null sink got {null.received} of {size} bytes")
            sink.samples.append(_mbps(size, seconds))
            log(f"upload {i + 1}/{repeat}: xsddkvm {ours.samples[-1]:.0f}, curl "
                f"{curl.samples[-1]:.0f}, null sink {sink.samples[-1]:.0f} MB/s")  # fmt: skip
    image.unlink()
    upload = Measure(
        "xva_upload", f"XVA upload to /import ({sizes.upload // MIB} MiB disk)", "MiB/s",
        ours, curl, ">=0.9x throughput", 0.9, higher=True,
        extra={"bytes": size, "xsddkvm_peak_rss_mb": max(rss)},
    )  # fmt: skip
    simulator = Measure(
        "sim_import_overhead", "Simulator /import alone (curl)", "MiB/s",
        Side("curl -T to the simulator", curl.samples), sink,
        "informational: near 1x means the simulator does not dominate", 0.0, higher=True,
    )  # fmt: skip
    return [upload, simulator]


def measure_large_rss(
    server: SimServer, xs: XapiSession, work: Path, sizes: Sizes, log: Logger
) -> Measure:
    """Peak RSS uploading a large (sparse on disk, sent in full) XVA, xsddkvm and curl."""
    image = write_xva(work / "large.xva", sizes.large, noise=False)
    size = image.stat().st_size
    log(f"large upload: {size / MIB:.0f} MiB XVA, {image.stat().st_blocks * 512 / MIB:.0f} MiB "
        "on disk")  # fmt: skip
    seconds, sent, vm, ours_rss = xsddkvm_upload(server, "xva", image)
    destroy_with_disks(xs, vm)
    curl_seconds, _, curl_vm, curl_rss = curl_upload(xs, image)
    destroy_with_disks(xs, str(curl_vm))
    image.unlink()
    log(f"large upload: xsddkvm {ours_rss:.0f} MB peak RSS, curl {curl_rss:.0f} MB")
    return Measure(
        "upload_peak_rss", f"Peak RSS uploading a {sizes.large // MIB} MiB XVA", "MB",
        Side("xsddkvm import_vm", [ours_rss]), Side("curl -T", [curl_rss]),
        "xsddkvm under 150 MB", 0.0, higher=False, met_override=ours_rss < 150,
        extra={"xsddkvm_mib_s": _mbps(sent, seconds), "curl_mib_s": _mbps(size, curl_seconds)},
    )  # fmt: skip


def measure_iso(
    server: SimServer, xs: XapiSession, work: Path, sizes: Sizes, repeat: int, log: Logger
) -> Measure:
    """A DDK ISO converted on the fly against the equivalent XVA file, both by xsddkvm."""
    iso = make_image(work / "ddk.iso", form="iso", pad_to=sizes.iso_pad)
    xva = work / "ddk-equivalent.xva"
    with open_ddk_iso(iso) as ddk, open(xva, "wb") as out:
        stream = ddk.to_xva()
        shutil.copyfileobj(stream, out, MIB)
    size = xva.stat().st_size
    on_the_fly, equivalent = Side("xsddkvm ISO -> XVA on the fly"), Side("xsddkvm XVA file")
    for i, iso_first in interleaved(repeat):
        for kind in ("iso", "xva") if iso_first else ("xva", "iso"):
            seconds, sent, vm, _ = xsddkvm_upload(server, kind, iso if kind == "iso" else xva)
            destroy_with_disks(xs, vm)
            (on_the_fly if kind == "iso" else equivalent).samples.append(_mbps(sent, seconds))
        log(f"iso {i + 1}/{repeat}: on the fly {on_the_fly.samples[-1]:.0f}, xva "
            f"{equivalent.samples[-1]:.0f} MB/s")  # fmt: skip
    iso.unlink()
    xva.unlink()
    return Measure(
        "iso_to_xva", f"DDK ISO converted to XVA on the fly ({sizes.iso_pad // MIB} MiB disk)",
        "MiB/s", on_the_fly, equivalent, ">=0.8x throughput", 0.8, higher=True,
        extra={"bytes": size},
    )  # fmt: skip
