"""What the stages share: the playbook, the session, what was created so far, and timings."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional

from ..config import Playbook
from ..events import EventSink
from ..secrets import Secret
from ..xapi.session import XapiSession
from ..xapi.vm import BuildIdentity


@dataclasses.dataclass
class ImageChoice:
    """The resolved DDK image: a local file to upload, or a template to clone."""

    kind: str  # "xva" | "iso" | "template"
    path: Optional[Path] = None
    template: Optional[str] = None  # template ref when kind == "template"
    digest: str = ""  # sha256 of the file (for golden-image matching)
    label: str = ""


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@dataclasses.dataclass
class BuildContext:
    playbook: Playbook
    xs: XapiSession
    identity: BuildIdentity
    emit: EventSink
    image: ImageChoice
    output_dir: Path
    keep_vm: str = "never"
    guest_ssh_port: Optional[int] = None  # a sim:// host tells it; else the playbook's
    signals_deferred: Callable[[], ContextManager[None]] = _nothing
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    # filled in by the stages
    current_stage: str = ""
    vm: Optional[str] = None
    vm_uuid: str = ""
    vm_name: str = ""
    vif: Optional[str] = None
    vif_device: str = "0"
    cloned_from_template: bool = False
    guest_password: Optional[Secret] = None
    guest_host_key: Optional[str] = None
    guest_ip: Optional[str] = None
    ssh: Any = None  # guest.ssh.GuestSSH once connected
    ddk: dict[str, str] = dataclasses.field(default_factory=dict)
    host_facts: dict[str, str] = dataclasses.field(default_factory=dict)
    staging_dir: Optional[Path] = None
    artifacts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    verification: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    source_digest: str = ""

    @property
    def ssh_port(self) -> int:
        return self.guest_ssh_port or self.playbook.vm.ssh_port

    def kept_vm_message(self) -> str:
        where = f" at {self.guest_ip}" if self.guest_ip else ""
        return (
            f"Kept the DDK VM {self.vm_name} (uuid {self.vm_uuid}){where} as asked by --keep-vm. "
            f"Reach it with `ssh root@{self.guest_ip or '<ip>'}` (port {self.ssh_port}); remove it "
            f"later with `xsddkvm gc {self.xs.url}`."
        )
