"""Stage: smoke-test the built pack in the same DDK: install its RPMs, load and unload its modules.

Only commands a real CentOS-based DDK has: ``rpm -Uvh`` (dependencies checked), ``depmod -a``
(the packs' specs rarely run it), ``modinfo -F vermagic``, ``modprobe``, ``lsmod``,
``modprobe -r`` and ``dmesg``. What happened is kept in ``ctx.verification`` (manifest.json).
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Any

from ..errors import VerifyError
from ..events import LogLine, Notice
from .context import BuildContext

LOG_TAIL = 20  # kernel log lines shown with a failure


class VerifyPack:
    name = "verify"
    description = "install and load the pack in the DDK"
    keepable = False

    def run(self, ctx: BuildContext) -> None:
        pb = ctx.playbook
        if not pb.verify.enabled:
            ctx.verification = {"skipped": "verify.enabled is false"}
            return
        runner = _Runner(ctx)
        kernel = ctx.ddk.get("kernel") or (runner.lines("uname -r") or ["unknown"])[-1]
        rpms = find_rpms(runner, pb.source.remote_dir)
        if not rpms and not pb.verify.modules:
            ctx.verification = {"skipped": "the build left no RPM to install"}
            ctx.emit(Notice("Smoke test skipped: the build left no RPM in the DDK.", "warning"))
            return
        ctx.verification = {
            "kernel": kernel,
            "rpms": [posixpath.basename(r) for r in rpms],
            "modules": [],
            "passed": False,
        }
        if not rpms:
            raise VerifyError(
                f"verify.modules lists {', '.join(pb.verify.modules)}, but the build left no RPM "
                f"under ~/rpmbuild/RPMS/*/ or {pb.source.remote_dir} in the DDK.",
                "Check that build-rpms runs before build-iso (see build.log), or set "
                "verify.enabled: false for a pack without RPMs.",
            )
        runner.must(
            "rpm -Uvh " + " ".join(shlex.quote(r) for r in rpms),
            "The built RPMs did not install in the DDK",
            "A Requires: in the spec names a package the target host does not have either: fix "
            "the spec (or the Makefile's RPM list) and build again.",
            with_log=False,
        )
        runner.must("depmod -a", "depmod failed in the DDK", "Read the output below.")
        for module in pb.verify.modules:
            ctx.verification["modules"].append(load_and_unload(runner, module, kernel))
        ctx.verification["passed"] = True
        modules = ", ".join(pb.verify.modules)
        loaded = f"{modules} loaded and unloaded" if modules else "no module to load"
        ctx.emit(Notice(f"Smoke test passed: {len(rpms)} RPM(s) installed, {loaded}.", "success"))

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo: everything happened inside the throwaway DDK VM."""


def find_rpms(runner: _Runner, remote_dir: str) -> list[str]:
    """Binary RPMs the build wrote to ~/rpmbuild/RPMS/<arch>/ or to the build directory."""
    found = runner.lines(f"ls -1 ~/rpmbuild/RPMS/*/*.rpm {shlex.quote(remote_dir)}/*.rpm")
    return [
        line
        for line in found
        if line.endswith(".rpm") and not line.endswith(".src.rpm") and "-debuginfo-" not in line
    ]


def load_and_unload(runner: _Runner, module: str, kernel: str) -> dict[str, Any]:
    """modprobe, check lsmod, capture the kernel log lines, modprobe -r; the record of it all."""
    quoted = shlex.quote(module)
    vermagic = runner.must(
        f"modinfo -F vermagic {quoted}",
        f"The module {module} is not in the installed RPMs",
        f"Check verify.modules against the .ko files the spec installs under "
        f"/lib/modules/{kernel}/.",
    )
    magic = vermagic[-1] if vermagic else ""
    before = runner.log_size()
    built_for = magic.split()[0] if magic else "unknown"
    runner.must(
        f"modprobe {quoted}",
        f"The module {module} did not load in the DDK"
        + (
            f": it was built for kernel {built_for}, the DDK runs {kernel}"
            if built_for != kernel
            else ""
        ),
        "Build against the DDK's own kernel tree (KERNEL_VERSION=$(uname -r), "
        "KDIR=/lib/modules/$(uname -r)/build) and build again.",
    )
    if not runner.listed(module):
        raise VerifyError(
            f"`modprobe {module}` succeeded but lsmod does not list {module}.",
            "Check that the module name in verify.modules is the .ko file's name.",
        )
    load_log = runner.log_since(before)
    before = runner.log_size()
    runner.must(
        f"modprobe -r {quoted}",
        f"The module {module} loaded but did not unload",
        "Its exit function must release everything its init function took.",
    )
    if runner.listed(module):
        raise VerifyError(f"`modprobe -r {module}` succeeded but lsmod still lists {module}.")
    return {
        "name": module,
        "vermagic": magic,
        "loaded": True,
        "unloaded": True,
        "kernel_log": {"load": load_log, "unload": runner.log_since(before)},
    }


class _Runner:
    """Runs verification commands in the DDK, echoing them as log lines and into build.log."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.log_path = ctx.output_dir / "build.log"

    def run(self, command: str) -> tuple[int, list[tuple[str, str]]]:
        """Exit status and ``(stream, line)`` of everything ``command`` printed."""
        lines: list[tuple[str, str]] = []

        def on_line(stream: str, line: str) -> None:
            lines.append((stream, line))
            self.ctx.emit(LogLine(stream, line))

        result = self.ctx.ssh.run(
            command, on_line=on_line, check=False, timeout=self.ctx.playbook.timeouts.build
        )
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {command}\n" + "".join(f"{line}\n" for _, line in lines))
        return result.exit_status, lines

    def lines(self, command: str) -> list[str]:
        """The non-empty stdout lines of ``command``, whatever its exit status."""
        return [
            line for stream, line in self.run(command)[1] if stream == "stdout" and line.strip()
        ]

    def must(self, command: str, what: str, hint: str, with_log: bool = True) -> list[str]:
        """``command``'s output lines; a failure raises VerifyError with the kernel log tail."""
        status, output = self.run(command)
        lines = [line for _, line in output]
        if status == 0:
            return [line for stream, line in output if stream == "stdout"]
        shown = [f"$ {command}", *lines[-LOG_TAIL:]]
        if with_log:
            shown += ["$ dmesg | tail", *self.lines(f"dmesg | tail -n {LOG_TAIL}")]
        self.ctx.verification["error"] = {
            "command": command,
            "exit_status": status,
            "output": lines,
        }
        raise VerifyError(
            f"{what}: `{command}` exited with status {status}.",
            f"{hint} The full output is in {self.log_path}.",
            command=command,
            exit_status=status,
            last_lines=shown,
        )

    def listed(self, module: str) -> bool:
        names = {line.split()[0] for line in self.lines("lsmod")[1:]}
        return module.replace("-", "_") in names

    def log_size(self) -> int:
        counted = self.lines("dmesg | wc -l")
        return int(counted[-1]) if counted and counted[-1].strip().isdigit() else 0

    def log_since(self, size: int) -> list[str]:
        return self.lines(f"dmesg | tail -n +{size + 1}")
