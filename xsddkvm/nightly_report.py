"""Nightly output: ``report.json``, ``junit.xml`` (one testcase per host) and a one-screen summary."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .nightly import NightlyRun
from .stages.fetch import write_json_atomic

SUITE = "xsddkvm nightly"


def write_report(run: NightlyRun, path: Path) -> None:
    write_json_atomic(
        path,
        {
            "started": run.started,
            "seconds": run.seconds,
            "exit_code": int(run.exit_code),
            "hosts": [o.to_dict() for o in run.outcomes],
        },
    )


def junit_tree(run: NightlyRun) -> ET.ElementTree:
    """JUnit XML as Jenkins and GitLab read it: a failed host is a testcase with <failure>."""
    failures = sum(o.status == "failed" for o in run.outcomes)
    counts = {
        "tests": str(len(run.outcomes)),
        "failures": str(failures),
        "errors": "0",
        "skipped": "0",
        "time": f"{run.seconds:.3f}",
    }
    root = ET.Element("testsuites", {"name": SUITE, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE, "timestamp": run.started, **counts})
    for o in run.outcomes:
        case = ET.SubElement(
            suite, "testcase", classname="xsddkvm.nightly", name=o.url, time=f"{o.seconds:.3f}"
        )
        if o.status == "failed":
            kind = str((o.error or {}).get("kind", "error"))
            first = o.message.splitlines()[0] if o.message else "failed"
            failure = ET.SubElement(case, "failure", message=first, type=kind)
            failure.text = o.message
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{o.status}: {o.reason}\noutput: {o.output_dir}"
    return ET.ElementTree(root)


def write_junit(run: NightlyRun, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    junit_tree(run).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def summary(run: NightlyRun) -> str:
    """What happened, one line per host, fit for a terminal or a CI log."""
    counts = {
        s: sum(o.status == s for o in run.outcomes) for s in ("rebuilt", "unchanged", "failed")
    }
    lines = [
        f"xsddkvm nightly: {len(run.outcomes)} hosts: {counts['rebuilt']} rebuilt, "
        f"{counts['unchanged']} up to date, {counts['failed']} failed ({run.seconds:.1f} s)"
    ]
    for o in run.outcomes:
        fp = o.fingerprint or {}
        facts = (
            f"{fp.get('product_version')}-{fp.get('build_number')} kernel {fp.get('linux')}"
            if fp
            else ""
        )
        lines.append(f"  {o.status.upper():<9} {o.url}  {facts}".rstrip())
        if o.status == "failed":
            lines.append(f"            {o.message.splitlines()[0] if o.message else ''}")
        elif o.status == "rebuilt":
            lines.append(f"            {o.reason} -> {o.output_dir}")
    lines.append(f"report: {run.output_dir / 'report.json'}  junit: {run.output_dir / 'junit.xml'}")
    return "\n".join(lines)
