"""The stages every use of a DDK VM starts with: from login to an SSH session in the guest.

``build`` continues with the build itself, ``image prepare`` with sealing a golden template.
"""

from __future__ import annotations

from .boot import Boot
from .connect import Connect
from .first_boot import FirstBoot
from .image import ProvisionVm
from .network import AddNetwork
from .ssh import SshConnect
from .wait_ip import WaitForIp

REACH_GUEST = (Connect, ProvisionVm, AddNetwork, Boot, FirstBoot, WaitForIp, SshConnect)
