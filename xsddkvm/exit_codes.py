"""Every exit status xsddkvm can return, in one place (documented in docs/exit-codes.md)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit statuses; only ``cli.main`` turns these into ``sys.exit``."""

    OK = 0
    INTERNAL = 1  # a bug: the message says where the traceback was written
    USAGE = 2  # click's own code for bad command-line syntax
    CONFIG = 3  # playbook, scenario or nightly config is invalid
    HOST_UNREACHABLE = 4  # DNS, refused, timeout, not a XenAPI endpoint
    AUTH = 5  # wrong credentials, or a secret that could not be read
    TLS = 6  # certificate not trusted or fingerprint mismatch
    IMAGE = 7  # DDK image unreadable, corrupt or unsupported
    STORAGE = 8  # SR full, no default SR
    HOST_API = 9  # any other XenAPI failure
    CONSOLE = 10  # first-boot dialog or console login failed
    GUEST = 11  # no IP, SSH unreachable or host key mismatch
    TRANSFER = 12  # pushing source or fetching artifacts failed
    BUILD = 13  # a make target failed or asked a question nobody answered
    ARTIFACT = 14  # artifacts missing or md5 verification failed, or output not writable
    VERIFY = 15  # the built pack did not install or load in the DDK
    CLEANUP = 16  # the build finished but objects could not be removed
    MISMATCH = 17  # no DDK matches the host (kernel/build)
    INSTALL = 18  # installing a pack on a host failed
    DOCTOR = 19  # doctor found at least one failing check
    NIGHTLY_REBUILT = 20  # nightly: at least one host was rebuilt, none failed
    NIGHTLY_FAILED = 21  # nightly: at least one host failed
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM
