"""Benchmarks: each xsddkvm operation against a baseline measured in the same run.

    python bench/run.py [--quick] [--repeat N] [--json FILE] [--only NAME ...]

Prints a table of medians and ratios and writes every sample to a JSON file
(docs/benchmarks.md says what each measure does and what limits it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench import builds, transfer, upload  # noqa: E402
from bench.common import FULL, QUICK, Measure, Sizes, access_to  # noqa: E402
from xsddkvm.sim.ddk_image import make_image  # noqa: E402
from xsddkvm.sim.scenario import default_scenario  # noqa: E402
from xsddkvm.sim.server import SimServer  # noqa: E402

GROUPS = ("upload", "ssh", "builds")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _uploads(work: Path, sizes: Sizes, repeat: int) -> list[Measure]:
    with SimServer(default_scenario(), data_dir=work / "sim-upload") as server:
        with access_to(server).session() as xs:
            found = upload.measure_upload(server, xs, work, sizes, repeat, log)
            found.append(upload.measure_large_rss(server, xs, work, sizes, log))
            found.append(upload.measure_iso(server, xs, work, sizes, repeat, log))
    return found


def _ssh(work: Path, sizes: Sizes, repeat: int) -> list[Measure]:
    with transfer.Loopback(work) as loop:
        return [
            transfer.measure_push(loop, work, sizes, repeat, log),
            transfer.measure_pull(loop, work, sizes, repeat, log),
        ]


def _builds(work: Path, sizes: Sizes, repeat: int) -> list[Measure]:
    image = make_image(work / "ddk-8.2.1.xva", form="xva")
    return [
        builds.measure_warm(image, work, repeat, log),
        builds.measure_nightly(image, work, sizes, repeat, log),
        builds.measure_parallel(image, work, sizes, repeat, log),
    ]


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table(measures: list[Measure]) -> str:
    """Markdown: one row per measure, medians of both sides, ratio, target and verdict."""
    rows = [
        "| Measure | xsddkvm | Baseline | Ratio | Target | Met |",
        "|---|---|---|---|---|---|",
    ]
    for m in measures:
        baseline = m.baseline.name.replace("|", "\\|")
        rows.append(
            f"| {m.title} | {_fmt(m.xsddkvm.median)} {m.unit} | {baseline}: "
            f"{_fmt(m.baseline.median)} {m.unit} | {m.ratio:.2f}x | {m.target} | "
            f"{'yes' if m.met else 'NO'} |"
        )
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI): under 90 s")
    parser.add_argument("--repeat", type=int, help="samples per side (default 3, quick 1)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), help="output")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run only these groups")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    if shutil.which("curl") is None:
        parser.error("curl is not installed (apt-get install curl)")
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # the guests' resets are expected
    work = Path(tempfile.mkdtemp(prefix="xsddkvm-bench-"))
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")  # keys, digests: never the user's own
    runners: dict[str, Callable[[Path, Sizes, int], list[Measure]]] = {
        "upload": _uploads, "ssh": _ssh, "builds": _builds,
    }  # fmt: skip
    started = time.monotonic()
    measures: list[Measure] = []
    try:
        for group in args.only or GROUPS:
            measures += runners[group](work, sizes, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    report = {
        "mode": "quick" if args.quick else "full",
        "repeat": repeat,
        "seconds": round(seconds, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "measures": {m.name: m.to_dict() for m in measures},
    }  # fmt: skip
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(measures))
    print(f"\n{len(measures)} measures in {seconds:.0f} s on {os.cpu_count()} CPUs; "
          f"samples in {args.json}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
