"""The smoke test in the DDK: the built RPMs install, the declared modules load and unload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_support import REPO, json_events, leftovers, run_cli, write_playbook

from xsddkvm.exit_codes import ExitCode

TEMPLATE = REPO / "xsddkvm" / "templates" / "helloworld"

# A kbuild tree for another kernel: the simulated modpost, told that the headers are 4.19.0+2.
WRONG_KBUILD = """modules:
\tpython3 $(XSDDKVM_SIM_ROOT)/lib/modules/$(shell uname -r)/build/scripts/modbuild.py 4.19.0+2 $(M)
"""


def source_copy(tmp_path: Path) -> Path:
    """The shipped example driver, in a folder the test may change."""
    src = tmp_path / "helloworld"
    shutil.copytree(TEMPLATE, src)
    return src


def manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "manifest.json").read_text())


def test_helloworld_installs_loads_and_unloads(sim, ddk_xva: Path, tmp_path: Path) -> None:
    code, stdout, _ = run_cli("build", str(write_playbook(sim, tmp_path, ddk_xva)), "--json")
    assert code == 0, stdout[-3000:]
    verification = manifest(tmp_path)["verification"]
    assert verification["passed"] is True and verification["kernel"] == "4.19.0+1"
    assert verification["rpms"] == ["helloworld-4.19.0+1-modules-1.0-1.x86_64.rpm"]
    (module,) = verification["modules"]
    assert module["name"] == "helloworld" and module["loaded"] and module["unloaded"]
    assert module["vermagic"].split()[0] == "4.19.0+1"
    logged = {k: [line.split("] ", 1)[1] for line in v] for k, v in module["kernel_log"].items()}
    assert logged == {"load": ["helloworld: hello from the DDK"], "unload": ["helloworld: goodbye"]}
    events = json_events(stdout)
    started = [e["stage"] for e in events if e["event"] == "stage_started"]
    assert started.index("build") < started.index("verify") < started.index("fetch")
    log = (tmp_path / "out" / "build.log").read_text()
    assert (
        "$ rpm -Uvh " in log
        and "$ modprobe helloworld" in log
        and "$ modprobe -r helloworld" in log
    )
    assert leftovers(sim) == {}


def test_printk_style_kernel_log_lines_are_recorded_too(sim, ddk_xva: Path, tmp_path: Path) -> None:
    src = source_copy(tmp_path)
    code_c = src / "src" / "helloworld.c"
    code_c.write_text(code_c.read_text().replace("pr_info(", "printk(KERN_INFO ", 1))
    pb = write_playbook(sim, tmp_path, ddk_xva, source={"dir": str(src)})
    code, stdout, _ = run_cli("build", str(pb), "--json")
    assert code == 0, stdout[-3000:]
    (module,) = manifest(tmp_path)["verification"]["modules"]
    assert [line.split("] ", 1)[1] for line in module["kernel_log"]["load"]] == [
        "helloworld: hello from the DDK"
    ]


def test_a_module_built_for_another_kernel_is_refused_at_load(
    sim, ddk_xva: Path, tmp_path: Path
) -> None:
    src = source_copy(tmp_path)
    (src / "wrong-kbuild").mkdir()
    (src / "wrong-kbuild" / "Makefile").write_text(WRONG_KBUILD)
    pb = write_playbook(
        sim,
        tmp_path,
        ddk_xva,
        source={"dir": str(src)},
        build={"make": "make KDIR=$PWD/wrong-kbuild"},
    )
    code, stdout, _ = run_cli("build", str(pb), "--json")
    assert code == ExitCode.VERIFY, stdout[-3000:]
    error = json_events(stdout)[-1]
    assert error["event"] == "error" and error["kind"] == "verify"
    assert "built for kernel 4.19.0+2, the DDK runs 4.19.0+1" in error["message"]
    assert error["command"] == "modprobe helloworld" and error["exit_status"] == 1
    assert (
        "modprobe: ERROR: could not insert 'helloworld': Exec format error" in error["last_lines"]
    )
    assert any(
        "helloworld: version magic '4.19.0+2 SMP mod_unload modversions' should be "
        "'4.19.0+1 SMP mod_unload modversions'" in line
        for line in error["last_lines"]
    )
    assert not (tmp_path / "out" / "helloworld.iso").exists()
    assert leftovers(sim) == {}


def test_a_missing_rpm_dependency_fails_the_install(sim, ddk_xva: Path, tmp_path: Path) -> None:
    src = source_copy(tmp_path)
    spec = src / "helloworld.spec"
    spec.write_text(
        spec.read_text().replace("Requires:", "Requires:       something-absent\nRequires:", 1)
    )
    pb = write_playbook(sim, tmp_path, ddk_xva, source={"dir": str(src)})
    code, _, stderr = run_cli("build", str(pb))
    assert code == ExitCode.VERIFY
    assert "The built RPMs did not install in the DDK" in stderr
    assert "error: Failed dependencies:" in stderr
    assert "something-absent is needed by helloworld-4.19.0+1-modules-1.0-1.x86_64" in stderr
    assert leftovers(sim) == {}


def test_verify_disabled_skips_the_smoke_test(sim, ddk_xva: Path, tmp_path: Path) -> None:
    pb = write_playbook(sim, tmp_path, ddk_xva, verify={"enabled": False})
    code, stdout, _ = run_cli("build", str(pb), "--json")
    assert code == 0, stdout[-3000:]
    assert manifest(tmp_path)["verification"] == {"skipped": "verify.enabled is false"}
    assert "$ rpm -Uvh" not in (tmp_path / "out" / "build.log").read_text()
