"""Guest transfers over a real loopback OpenSSH sshd: ``put_tree`` against ``tar c | ssh tar x``
and ``get`` against ``scp``, the same key and server for both; connection setup counted on
both sides, since ssh and scp each open their own."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import paramiko

from tests.sshd import RealSshd, keygen, skip_reason
from xsddkvm.guest.ssh import GuestSSH

from .common import (
    MIB,
    Logger,
    Measure,
    Side,
    Sizes,
    interleaved,
    run,
    timed,
    write_random,
    write_tree,
)


class Loopback:
    """A modern-profile RealSshd and one RSA key that paramiko and OpenSSH both use."""

    def __init__(self, work: Path) -> None:
        reason = skip_reason()
        if reason:
            raise RuntimeError(f"the SSH benchmarks need a real sshd: {reason}")
        self.key_path = keygen(work / "id_rsa")
        self.key = paramiko.RSAKey.from_private_key_file(str(self.key_path))
        self.sshd = RealSshd("modern", work / "sshd")
        self.sshd.authorize(self.key_path.with_suffix(".pub").read_text())

    def __enter__(self) -> Loopback:
        self.sshd.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sshd.stop()

    def options(self, port_flag: str) -> list[str]:
        return [
            "-i", str(self.key_path), port_flag, str(self.sshd.port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def connect(self) -> GuestSSH:
        return GuestSSH.connect(self.sshd.host, self.sshd.port, pkey=self.key, timeout=60)


def measure_push(loop: Loopback, work: Path, sizes: Sizes, repeat: int, log: Logger) -> Measure:
    tree = work / "tree"
    total = write_tree(tree, sizes.files)
    remote = work / "pushed"
    ssh = ["ssh", *loop.options("-p"), f"root@{loop.sshd.host}"]
    untar = f"mkdir -p {shlex.quote(str(remote))} && tar x -C {shlex.quote(str(remote))}"
    pipeline = f"tar c -C {shlex.quote(str(tree))} . | {shlex.join(ssh)} {shlex.quote(untar)}"
    ours, baseline = Side("xsddkvm put_tree"), Side("tar c | ssh tar x")

    def put_tree() -> None:
        with loop.connect() as guest:
            guest.put_tree(tree, str(remote))

    for i, ours_first in interleaved(repeat):
        for side in ("ours", "tar") if ours_first else ("tar", "ours"):
            if side == "ours":
                ours.samples.append(timed(put_tree))
            else:
                baseline.samples.append(
                    timed(lambda: run(["bash", "-o", "pipefail", "-c", pipeline]))
                )
            if sum(1 for p in remote.rglob("*") if p.is_file()) != sizes.files:
                raise RuntimeError(f"{side}: {remote} does not hold the {sizes.files} files")
            shutil.rmtree(remote)
        log(f"push {i + 1}/{repeat}: xsddkvm {ours.samples[-1]:.2f} s, tar|ssh "
            f"{baseline.samples[-1]:.2f} s")  # fmt: skip
    shutil.rmtree(tree)
    return Measure(
        "push_tree", f"Push a {sizes.files}-file source tree ({total / MIB:.0f} MiB)", "s",
        ours, baseline, "<=1.2x time", 1.2, higher=False, extra={"bytes": total},
    )  # fmt: skip


def measure_pull(loop: Loopback, work: Path, sizes: Sizes, repeat: int, log: Logger) -> Measure:
    source = write_random(work / "remote-pack.iso", sizes.pull)
    local = work / "pulled.iso"
    scp = ["scp", "-q", *loop.options("-P"), f"root@{loop.sshd.host}:{source}", str(local)]
    ours, baseline = Side("xsddkvm get"), Side("scp")

    def get() -> None:
        with loop.connect() as guest:
            guest.get(str(source), local)

    for i, ours_first in interleaved(repeat):
        for side in ("ours", "scp") if ours_first else ("scp", "ours"):
            if side == "ours":
                ours.samples.append(timed(get))
            else:
                baseline.samples.append(timed(lambda: run(scp)))
            if local.stat().st_size != sizes.pull:
                raise RuntimeError(f"{side}: {local} is not {sizes.pull} bytes")
            local.unlink()
        log(f"pull {i + 1}/{repeat}: xsddkvm {ours.samples[-1]:.2f} s, scp "
            f"{baseline.samples[-1]:.2f} s")  # fmt: skip
    source.unlink()
    return Measure(
        "pull_iso", f"Pull a {sizes.pull // MIB} MiB ISO", "s", ours, baseline,
        "<=1.2x time", 1.2, higher=False,
    )  # fmt: skip
