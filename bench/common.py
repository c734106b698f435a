"""Shared pieces of the benchmarks: sizes per mode, results, timing, test data, sessions."""

from __future__ import annotations

import dataclasses
import io
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

from xsddkvm.build import HostAccess
from xsddkvm.image.xva import CHUNK, VmSpec, xva_from_raw
from xsddkvm.secrets import Secret
from xsddkvm.sim.server import SimServer
from xsddkvm.xapi.tls import TlsSettings

MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each measure is; ``quick`` keeps CI under a minute and a half."""

    upload: int  # the generated XVA's disk (random data)
    large: int  # the sparse upload whose peak RSS is measured
    iso_pad: int  # the DDK ISO's disk
    files: int  # files in the pushed tree
    pull: int  # the pulled file
    parallel: int  # builds at once
    nightly_hosts: int


FULL = Sizes(1024 * MIB, 4096 * MIB, 512 * MIB, 3000, 200 * MIB, 8, 4)
QUICK = Sizes(32 * MIB, 64 * MIB, 16 * MIB, 300, 16 * MIB, 2, 2)


@dataclasses.dataclass
class Side:
    """One side of a measure: its name and every sample (unit of the measure)."""

    name: str
    samples: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "median": self.median, "samples": self.samples}


@dataclasses.dataclass
class Measure:
    """xsddkvm against its baseline. ``ratio`` is always xsddkvm's median over the baseline's;
    ``limit`` and ``higher`` say which side of it meets the target, unless ``met`` is set."""

    name: str
    title: str
    unit: str
    xsddkvm: Side
    baseline: Side
    target: str
    limit: float
    higher: bool
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    met_override: Optional[bool] = None

    @property
    def ratio(self) -> float:
        return self.xsddkvm.median / self.baseline.median

    @property
    def met(self) -> bool:
        if self.met_override is not None:
            return self.met_override
        return self.ratio >= self.limit if self.higher else self.ratio <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "xsddkvm": self.xsddkvm.to_dict(),
            "baseline": self.baseline.to_dict(),
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            **({"extra": self.extra} if self.extra else {}),
        }


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` took, starting with no dirty pages left by the previous sample: writeback
    of earlier files would otherwise land on whichever side runs next."""
    os.sync()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(args: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a baseline tool; fail loudly with its stderr."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


class _NoiseDisk(io.RawIOBase):
    """An unseekable disk of pseudo-random bytes: xva_from_raw keeps every chunk, and no chunk
    is all zeros, so neither xsddkvm nor the host can skip or compress anything."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self._left = size
        self._pool = random.Random(seed).randbytes(8 * MIB)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left)
        start = (self._pos // CHUNK * 4099) % (len(self._pool) - CHUNK)  # differs per chunk
        offset = start + self._pos % CHUNK
        take = min(n, CHUNK - self._pos % CHUNK)
        buffer[:take] = self._pool[offset : offset + take]
        self._pos += take
        self._left -= take
        return take


class _ZeroDisk(io.RawIOBase):
    """An unseekable all-zero disk: every chunk goes into the XVA (as a full-size upload)."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left)
        buffer[:n] = bytes(n)
        self._left -= n
        return n


def write_xva(path: Path, size: int, noise: bool) -> Path:
    """An XVA of a ``size``-byte disk, every chunk present. Zero disks are written sparsely
    (holes wherever 64 KiB of the archive are zeros), so a 4 GiB one costs ~260 MB of disk."""
    disk: Callable[[], io.RawIOBase] = (
        (lambda: _NoiseDisk(size)) if noise else (lambda: _ZeroDisk(size))
    )
    spec = VmSpec("bench disk", memory=256 * MIB, vcpus=1, disk_size=size)
    stream = xva_from_raw(spec, lambda: io.BufferedReader(disk()), size)
    hole = bytes(64 * 1024)
    with open(path, "wb") as out:
        while piece := stream.read(len(hole)):
            if piece == hole:
                out.seek(len(piece), os.SEEK_CUR)
            else:
                out.write(piece)
        out.truncate()
    return path


def write_tree(root: Path, count: int, seed: int = 11) -> int:
    """``count`` source-like files (1-12 KiB) in 30 directories; returns their total bytes."""
    rng = random.Random(seed)
    words = [rng.randbytes(6).hex() for _ in range(500)]
    total = 0
    for i in range(count):
        folder = root / f"dir{i % 30:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(rng.choices(words, k=8)) for _ in range(rng.randint(10, 120))]
        data = ("\n".join(lines) + "\n").encode()
        (folder / f"file{i:05d}.c").write_bytes(data)
        total += len(data)
    return total


def write_random(path: Path, size: int, seed: int = 13) -> Path:
    pool = random.Random(seed).randbytes(8 * MIB)
    with open(path, "wb") as out:
        for i in range(0, size, MIB):
            start = (i // MIB * 4099) % (len(pool) - MIB)
            out.write(pool[start : start + min(MIB, size - i)])
    return path


def access_to(server: SimServer) -> HostAccess:
    """What a playbook would say to reach ``server``, pinned to its certificate."""
    return HostAccess(
        server.url,
        server.username,
        Secret(server.password),
        TlsSettings(pin_sha256=server.fingerprint),
        timeout=600,
        guest_ssh_port=server.host.guests.ssh_port,
    )


def interleaved(repeat: int) -> Iterator[tuple[int, bool]]:
    """(repetition, xsddkvm first?) alternating, so neither side always gets the warm cache."""
    for i in range(repeat):
        yield i, i % 2 == 0


@dataclasses.dataclass
class Spawned:
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    returncode: int


def _high_water_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spawn(
    args: list[str], *, env: Optional[dict[str, str]] = None, timeout: float = 900
) -> Spawned:
    """Run ``args`` to completion: its wall time and its own peak RSS, polled from
    ``/proc/PID/status`` VmHWM (``ru_maxrss`` would report the forking parent's RSS)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=REPO)
        peak = 0.0
        deadline = started + timeout
        while proc.poll() is None:
            peak = max(peak, _high_water_mb(proc.pid))
            if time.perf_counter() > deadline:
                proc.kill()
            try:
                proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    return Spawned(stdout, stderr, seconds, peak, proc.returncode)


Logger = Callable[[str], None]
