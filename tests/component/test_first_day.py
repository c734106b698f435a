"""A new user's first day, scripted: a clean virtual environment, `pip install`, then
`xsddkvm init`, `doctor` and `build` against the built-in simulator, as docs/quickstart.md says.

Runs the installed ``xsddkvm`` entry point (not this checkout) from a copy of the working tree;
pip fetches the dependencies (its cache makes that quick). Each step's time is recorded as a
test property (``first_day_<step>_seconds``; in the JUnit XML with ``--junitxml``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from cli_support import REPO

# Not part of an install: VCS data, caches, build output and local results.
ANYWHERE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".*_cache", "*.egg-info")
AT_TOP = {"build", "dist", "out", "bench"}  # ddk_files has lib/modules/<k>/build: top level only


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == REPO
    return set(ANYWHERE(directory, names)) | ({n for n in names if n in AT_TOP} if top else set())


STEP_TIMEOUT = 300.0


def test_first_day_from_a_clean_venv(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    source = tmp_path / "xsddkvm-src"
    shutil.copytree(REPO, source, ignore=_ignore)
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    started = time.monotonic()

    def step(name: str, *command: str | Path) -> str:
        begin = time.monotonic()
        done = subprocess.run(
            [str(c) for c in command],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
        record_property(f"first_day_{name}_seconds", round(time.monotonic() - begin, 1))
        assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    step("venv", sys.executable, "-m", "venv", venv)
    step("pip_install", venv / "bin" / "python", "-m", "pip", "install", "-q", source)
    installed = step(
        "where", venv / "bin" / "python", "-c", "import xsddkvm; print(xsddkvm.__file__)"
    )
    assert Path(installed.strip()).is_relative_to(venv)

    step("init", "xsddkvm", "init", "mydriver", "--no-input", "--driver-name", "mydrv")
    playbook = work / "mydriver" / "mydrv.yml"
    doctor = step("doctor", "xsddkvm", "doctor", playbook)
    assert "FAIL" not in doctor
    step("build", "xsddkvm", "build", playbook)
    record_property("first_day_seconds", round(time.monotonic() - started, 1))

    out = work / "out"  # artifacts.output_dir: relative to the current directory
    assert {"mydrv.iso", "mydrv.iso.md5", "build.log", "manifest.json"} <= {
        p.name for p in out.iterdir()
    }
    check = subprocess.run(
        ["md5sum", "-c", "mydrv.iso.md5"], cwd=out, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and check.stdout.strip() == "mydrv.iso: OK", check

    # The installed entry point completes out of the box (docs/quickstart.md "Shell completion").
    env["_XSDDKVM_COMPLETE"] = "bash_source"
    assert "complete -o nosort -F _xsddkvm_completion xsddkvm" in step("completion", "xsddkvm")
