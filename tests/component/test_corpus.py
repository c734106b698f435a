"""The bad-input corpus: every file in tests/corpus/ is one bad playbook, image, host or build.

A case is data: ``name``, ``category``, what to set up, and ``expect: {exit_code, words}``.
Set-up keys (all optional):

- ``playbook``: sections deep-merged into the hello-world playbook; ``{tmp}`` in a string is
  the test's directory. ``playbook_text``: the playbook file verbatim. ``no_playbook: true``.
- ``source``, ``image``, ``host``, ``output``: the name of a generator below.
- ``faults``: simulator fault knobs. ``args``: extra ``xsddkvm build`` arguments.
- ``known_issue``: why xsddkvm does not meet ``expect`` yet; the case is a strict xfail, so it
  fails as soon as the fix lands and the key must go.

Each run must fail with the exit code, print one paragraph containing the words (plus the
log tail for build errors) and no traceback, leave nothing on the host and no partial file.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from cli_support import PASSWORD_ENV, REPO, leftovers, run_cli, write_playbook

from xsddkvm.sim.server import SimServer

CORPUS = REPO / "tests" / "corpus"
CASES = sorted(CORPUS.glob("*.yml"))
CATEGORIES = {"playbook", "image", "host", "build"}


def load_case(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text())
    assert case["category"] in CATEGORIES, path
    assert isinstance(case["expect"]["exit_code"], int) and case["expect"]["words"], path
    return case


# -- generators: each makes one bad thing in the test's directory --------------------------


def _copy_of(image: Path, tmp: Path, name: str) -> Path:
    out = tmp / name
    shutil.copyfile(image, out)
    return out


def _patched(image: Path, tmp: Path, name: str, old: bytes, new: bytes) -> Path:
    data = bytearray(image.read_bytes())
    at = data.index(old)
    data[at : at + len(old)] = new  # same length: tar headers stay valid
    out = tmp / name
    out.write_bytes(bytes(data))
    return out


def _image_in_chunk(image: Path, tmp: Path) -> Path:
    data = bytearray(image.read_bytes())
    header = data.index(b"Ref:2/00000000\0")
    data[header + 512 + 4096] ^= 0xFF  # a byte of the first disk chunk, past its tar header
    out = tmp / "bad-checksum.xva"
    out.write_bytes(bytes(data))
    return out


IMAGES: dict[str, Callable[[Path, Path], Path]] = {
    "missing": lambda image, tmp: tmp / "no-such-ddk.xva",
    "empty": lambda image, tmp: (tmp / "empty.xva", (tmp / "empty.xva").write_bytes(b""))[0],
    "not-an-xva": lambda image, tmp: (
        tmp / "notes.xva",
        (tmp / "notes.xva").write_text("These are my notes, not a VM export.\n" * 100),
    )[0],
    "truncated": lambda image, tmp: (
        tmp / "truncated.xva",
        (tmp / "truncated.xva").write_bytes(image.read_bytes()[: image.stat().st_size // 3]),
    )[0],
    "bad-checksum": _image_in_chunk,
    "newer-format": lambda image, tmp: _patched(
        image,
        tmp,
        "newer.xva",
        b"<name>xapi_major</name><value>1<",
        b"<name>xapi_major</name><value>9<",
    ),
    "not-an-iso": lambda image, tmp: _copy_of(image, tmp, "XenServer-8.2.1-DDK.iso"),
    "directory": lambda image, tmp: (tmp / "ddk.xva", (tmp / "ddk.xva").mkdir())[0],
}


def _source_copy(template: Path, tmp: Path) -> Path:
    src = tmp / "src"
    shutil.copytree(template, src)
    return src


def _wrong_md5(template: Path, tmp: Path) -> Path:
    src = _source_copy(template, tmp)
    _append_to_build_iso(src, "echo 00000000000000000000000000000000 > $(NAME).iso.md5")
    return src


def _no_iso(template: Path, tmp: Path) -> Path:
    src = _source_copy(template, tmp)
    _append_to_build_iso(src, "rm -f $(NAME).iso")
    return src


def _append_to_build_iso(src: Path, command: str) -> None:
    """Add ``command`` as the last line of the Makefile's build-iso recipe."""
    makefile = src / "Makefile"
    text = makefile.read_text()
    assert "\nclean:" in text, "the template Makefile changed: adapt this generator"
    makefile.write_text(text.replace("\nclean:", f"\t{command}\n\nclean:"))


def _huge(template: Path, tmp: Path) -> Path:
    src = _source_copy(template, tmp)
    with open(src / "firmware.bin", "wb") as f:
        f.truncate(3 * 2**20)  # sparse: large on paper, cheap on disk
    return src


def _empty(_template: Path, tmp: Path) -> Path:
    (tmp / "src" / ".git").mkdir(parents=True)
    (tmp / "src" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # excluded by default
    return tmp / "src"


SOURCES: dict[str, Callable[[Path, Path], Path]] = {
    "wrong-md5": _wrong_md5,
    "huge": _huge,
    "empty": _empty,
    "no-iso": _no_iso,
}


@contextlib.contextmanager
def _http_server() -> Iterator[str]:
    """A web server that is not XenAPI: every request gets a small HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def _page(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _page

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def _tiny_tmpfs(tmp: Path) -> Iterator[Path]:
    mount = tmp / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount / "out"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# -- the test ------------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _fill(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, list):
        return [_fill(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    return value


def materialise(
    case: dict[str, Any],
    sim: SimServer,
    image: Path,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    stack: contextlib.ExitStack,
) -> tuple[list[str], Path]:
    """The playbook and arguments for ``case``; returns (build arguments, output directory)."""
    if "image" in case:
        image = IMAGES[case["image"]](image, tmp)
    pb = write_playbook(sim, tmp, image)
    data = yaml.safe_load(pb.read_text())
    if "source" in case:
        data["source"]["dir"] = str(SOURCES[case["source"]](Path(data["source"]["dir"]), tmp))
    _merge(data, _fill(case.get("playbook", {}), tmp))
    args: list[str] = list(_fill(case.get("args", []), tmp))
    host = case.get("host")
    if host == "dns-failure":
        data["host"]["url"] = "https://no-such-host.invalid"
    elif host == "closed-port":
        data["host"]["url"] = _closed_port()
    elif host == "not-xenapi":
        data["host"]["url"] = stack.enter_context(_http_server())
    elif host == "wrong-password":
        monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    elif host == "no-password":
        monkeypatch.delenv(PASSWORD_ENV)
    elif host is not None:
        raise AssertionError(f"unknown host variant {host!r}")
    out = Path(data["artifacts"]["output_dir"])
    if case.get("output") == "tiny-tmpfs":
        out = stack.enter_context(_tiny_tmpfs(tmp))
        data["artifacts"]["output_dir"] = str(out)
    for knob, value in case.get("faults", {}).items():
        setattr(sim.host.scenario.faults, knob, value)
    if "playbook_text" in case:
        pb.write_text(case["playbook_text"])
    else:
        pb.write_text(yaml.safe_dump(data))
    if case.get("no_playbook"):
        pb.unlink()
    return [str(pb), *args], out


def error_text(stderr: str) -> str:
    """The error paragraph: from the last line starting ``Error:``, without a log tail."""
    starts = [m.start() for m in re.finditer(r"^Error: ", stderr, re.MULTILINE)]
    assert starts, stderr[-2000:]
    return stderr[starts[-1] :].rstrip("\n").split("\nLast ", 1)[0]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input(
    path: Path,
    sim: SimServer,
    ddk_xva: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    case = load_case(path)
    if "known_issue" in case:
        request.applymarker(pytest.mark.xfail(reason=case["known_issue"], strict=True))
    with contextlib.ExitStack() as stack:
        args, out = materialise(case, sim, ddk_xva, tmp_path, monkeypatch, stack)
        code, _stdout, stderr = run_cli("build", *args)
        expected = case["expect"]
        assert code == expected["exit_code"], stderr[-2000:]
        paragraph = error_text(stderr)
        assert "Traceback" not in stderr and "Internal error" not in stderr
        assert "\n" not in paragraph, f"more than one paragraph:\n{paragraph}"
        for word in expected["words"]:
            assert word.lower() in paragraph.lower(), paragraph
        assert leftovers(sim) == {}
        if out.is_dir():
            stray = [p.name for p in out.iterdir() if p.name != "build.log"]
            assert stray == [], f"partial files left in {out}: {stray}"


def test_corpus_is_large_and_covers_every_category() -> None:
    cases = [load_case(p) for p in CASES]
    assert len(cases) >= 30
    assert {c["category"] for c in cases} == CATEGORIES
    assert len({c["name"] for c in cases}) == len(cases)
    assert os.path.isdir(CORPUS)
