"""Every string the simulated DDK console prints, per wording variant, in one table.

The real first-boot prompts are UNCONFIRMED (shared/reference/ddk.md §2), so the simulator
speaks several plausible dialects and clients must match prompts as data, not hard-code one.
The variant comes from ``/etc/xsddkvm-sim/ddk.json`` key ``console_wording`` or else from the
product version major in ``/etc/redhat-release``.
"""

from __future__ import annotations

import json
import re
from typing import Optional

from .sandbox import Sandbox

CLEAR = "\x1b[H\x1b[2J"

# Keys every variant defines. Strings are written as-is; "\r\n" is the terminal's line end.
WORDING: dict[str, dict[str, str]] = {
    # XenServer 5.x era (CentOS 5): a framed "first boot" screen.
    "xs5": {
        "boot": (
            "Linux version {kernel} (root@ddk) (gcc version 4.1.2)\r\n"
            "Command line: root=/dev/xvda1 ro {pv_args}\r\n"
            "Xen virtual console successfully installed as xvc0\r\n"
            "\x1b[1mWelcome to {release}\x1b[0m\r\n"
            "Starting udev: [  OK  ]\r\n"
        ),
        "services": "Starting sshd: [  OK  ]\r\nStarting xe-linux-distribution: [  OK  ]\r\n",
        "dialog_intro": CLEAR + "*** First boot configuration ***\r\n\r\n",
        "new_password": "Enter new root password: ",
        "confirm_password": "Confirm root password: ",
        "mismatch": "Passwords do not match, please try again.\r\n\r\n",
        "empty": "The password may not be empty.\r\n\r\n",
        "password_set": "Root password set.\r\n\r\n",
        "banner": "\r\n{release}\r\nKernel {kernel} on an x86_64\r\n\r\n",
        "login": "{hostname} login: ",
        "password": "Password: ",
        "login_incorrect": "Login incorrect\r\n\r\n",
        "shell_prompt": "[root@{hostname} ~]# ",
        "panic": "Kernel panic - not syncing: {reason}\r\n",
    },
    # XenServer 6.x (CentOS 5/6 init scripts): the rootpassword service's wording.
    "xs6": {
        "boot": (
            CLEAR + "Linux version {kernel} (mockbuild@ddk) (gcc version 4.4.4)\r\n"
            "Command line: root=/dev/xvda1 ro {pv_args}\r\n"
            "hvc0: console [hvc0] enabled\r\n"
            "\r\n\t\tWelcome to \x1b[0;36m{release}\x1b[0;39m\r\n"
            "Starting udev: \x1b[60G[  \x1b[0;32mOK\x1b[0;39m  ]\r\n"
        ),
        "services": (
            "Starting sshd: \x1b[60G[  \x1b[0;32mOK\x1b[0;39m  ]\r\n"
            "Starting xe-linux-distribution: \x1b[60G[  \x1b[0;32mOK\x1b[0;39m  ]\r\n"
        ),
        "dialog_intro": CLEAR + "Welcome to the XenServer DDK.\r\n\r\n",
        "new_password": "Please enter a new password for the root user: ",
        "confirm_password": "Please re-enter the password: ",
        "mismatch": "The passwords do not match.\r\n\r\n",
        "empty": "The password cannot be empty.\r\n\r\n",
        "password_set": "The root password has been set.\r\n\r\n",
        "banner": "\r\n{release}\r\nKernel {kernel} on an x86_64\r\n\r\n",
        "login": "{hostname} login: ",
        "password": "Password: ",
        "login_incorrect": "Login incorrect\r\n\r\n",
        "shell_prompt": "[root@{hostname} ~]# ",
        "panic": "Kernel panic - not syncing: {reason}\r\n",
    },
    # XenServer 7.x and later (CentOS 7, systemd): passwd(1)-style prompts.
    "xs7": {
        "boot": (
            CLEAR + "[    0.000000] Linux version {kernel} (mockbuild@ddk) (gcc version 4.8.5)\r\n"
            "[    0.000000] Command line: root=/dev/xvda1 ro {pv_args}\r\n"
            "[    0.412345] hvc0: console [hvc0] enabled\r\n"
            "\r\nWelcome to \x1b[0;31m{release}\x1b[0m!\r\n\r\n"
            "[\x1b[32m  OK  \x1b[0m] Started udev Kernel Device Manager.\r\n"
        ),
        "services": (
            "[\x1b[32m  OK  \x1b[0m] Started OpenSSH server daemon.\r\n"
            "[\x1b[32m  OK  \x1b[0m] Started Xen guest agent.\r\n"
        ),
        "dialog_intro": "\r\nSet the password for the root account of this DDK VM.\r\n",
        "new_password": "New root password: ",
        "confirm_password": "Retype new root password: ",
        "mismatch": "Sorry, passwords do not match.\r\n",
        "empty": "No password supplied\r\n",
        "password_set": "passwd: all authentication tokens updated successfully.\r\n",
        "banner": "\r\n{release}\r\nKernel {kernel} on an x86_64\r\n\r\n",
        "login": "{hostname} login: ",
        "password": "Password: ",
        "login_incorrect": "Login incorrect\r\n\r\n",
        "shell_prompt": "[root@{hostname} ~]# ",
        "panic": "[    1.234567] Kernel panic - not syncing: {reason}\r\n",
    },
}

# Lines the console_noise fault scatters between writes (never inside a prompt).
NOISE = (
    "\r\n[  {t:9.6f}] xen_netfront: Initialising Xen virtual ethernet driver\r\n",
    "\r\n[  {t:9.6f}] EXT4-fs (xvda1): re-mounted. Opts: (null)\r\n",
    "\r\n[  {t:9.6f}] random: crng init done\r\n",
    "\x1b[0m",
    "\x1b[1;33m\x1b[0m",
    "\x1b[?25h",
    "\x1b7\x1b8",
)


def variant_for(sandbox: Sandbox) -> str:
    """The wording variant this guest's image asks for."""
    config = sandbox.read_text("/etc/xsddkvm-sim/ddk.json")
    if config:
        try:
            chosen = json.loads(config).get("console_wording")
        except (ValueError, AttributeError):
            chosen = None
        if chosen in WORDING:
            return str(chosen)
    major = _product_major(sandbox.read_text("/etc/redhat-release") or "")
    if major is not None and major <= 5:
        return "xs5"
    if major == 6:
        return "xs6"
    return "xs7"


def _product_major(release: str) -> Optional[int]:
    match = re.search(r"release (\d+)\.", release)
    return int(match.group(1)) if match else None


def text(variant: str, key: str, **values: str) -> str:
    """One wording entry with its ``{placeholders}`` filled."""
    return WORDING[variant][key].format(**values)
