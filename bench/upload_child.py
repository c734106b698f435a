"""One upload by xsddkvm in its own process, so its peak RSS is its own (not the simulator's).

``python -m bench.upload_child URL FINGERPRINT USER xva|iso PATH``; the password comes in
``$XSDDKVM_BENCH_PASSWORD``. Prints ``{"seconds", "bytes", "vm", "peak_kib"}`` (its own VmHWM, the exact peak RSS).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from xsddkvm.image.ddk_iso import open_ddk_iso
from xsddkvm.secrets import Secret
from xsddkvm.xapi.imports import SizedStream, import_vm
from xsddkvm.xapi.session import XapiSession
from xsddkvm.xapi.tls import TlsSettings
from xsddkvm.xapi.vm import find_sr


class _File:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - the process ends after one upload
        self._size = path.stat().st_size

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def __len__(self) -> int:
        return self._size


def main(url: str, fingerprint: str, user: str, kind: str, path: str) -> None:
    password = Secret(os.environ["XSDDKVM_BENCH_PASSWORD"])
    sent = [0]

    def progress(done: int, _total: int) -> None:
        sent[0] = done

    tls = TlsSettings(pin_sha256=fingerprint)
    with XapiSession(url, user, password, tls, 600) as xs, contextlib.ExitStack() as stack:
        sr = find_sr(xs, None)
        started = time.perf_counter()
        stream: Callable[[], SizedStream] = lambda: _File(Path(path))  # noqa: E731
        if kind == "iso":
            stream = stack.enter_context(open_ddk_iso(path)).to_xva
        vm = import_vm(xs, stream, sr=sr, timeout=600, on_progress=progress)
        seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]
    print(json.dumps({"seconds": seconds, "bytes": sent[0], "vm": vm, "peak_kib": int(status)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
