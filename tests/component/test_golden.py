"""Golden DDK templates against a real simulated host: prepare, find, clone warm, remove."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cli_support import PASSWORD_ENV, access_to, import_tasks, leftovers, run_cli, write_playbook

from xsddkvm import golden, keys
from xsddkvm.config import Playbook, load_playbook
from xsddkvm.errors import AuthError, ConfigError
from xsddkvm.events import LogLine, Recorder
from xsddkvm.exit_codes import ExitCode
from xsddkvm.guest.ssh import GuestSSH
from xsddkvm.sim.server import SimServer
from xsddkvm.stages.boot import Boot
from xsddkvm.stages.connect import Connect
from xsddkvm.stages.context import BuildContext, ImageChoice
from xsddkvm.stages.image import ProvisionVm
from xsddkvm.stages.network import AddNetwork
from xsddkvm.stages.pipeline import run_stages
from xsddkvm.stages.wait_ip import WaitForIp
from xsddkvm.xapi.vm import BuildIdentity


@pytest.fixture()
def pb(sim: SimServer, ddk_xva: Path, tmp_path: Path) -> Playbook:
    return load_playbook(write_playbook(sim, tmp_path, ddk_xva))


@pytest.fixture()
def prepared(sim: SimServer, pb: Playbook) -> golden.TemplateInfo:
    return golden.prepare(pb, access_to(sim), Recorder())


def test_prepare_keeps_a_tagged_template_and_nothing_else(
    sim: SimServer, pb: Playbook, prepared: golden.TemplateInfo, ddk_xva: Path
) -> None:
    from xsddkvm.build import image_digest

    with access_to(sim).session() as xs:
        listed = golden.list_templates(xs)
    assert listed == [prepared]
    assert prepared.image_sha256 == image_digest(ddk_xva)
    assert (prepared.ddk_version, prepared.ddk_build) == ("8.2.1", "58")
    assert prepared.guest_kernel == "4.19.0+1"
    assert prepared.guest_kernel_package == "kernel-devel-4.19.19-8.0.30"
    assert prepared.ssh_host_key.startswith("SHA256:")
    left = leftovers(sim)
    assert sorted(left) == ["VBD", "VDI", "VM"]  # the template, its disk and its VBD
    (template,) = left["VM"]
    assert template["is_a_template"] is True and template["power_state"] == "Halted"
    tags = template["other_config"]
    assert tags["xsddkvm.golden"] == "true"
    for key in ("image_sha256", "ddk_version", "ddk_build", "guest_kernel", "version"):
        assert tags[f"xsddkvm.{key}"]
    assert "xsddkvm.build_id" not in tags  # not a build leftover for gc
    (vdi,) = left["VDI"]
    assert vdi["other_config"]["xsddkvm.golden_template"] == prepared.uuid
    assert "xsddkvm.build_id" not in vdi["other_config"]
    key_file = keys.key_path()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.with_name("id_rsa.pub").read_text().startswith("ssh-rsa ")
    # Preparing the same image again finds the template instead of importing.
    mark = sim.host.state.generation
    assert golden.prepare(pb, access_to(sim), Recorder()) == prepared
    assert import_tasks(sim, mark) == []


class _KeyLogin:
    """Last stage of the warm test: log in with xsddkvm's key, pinned to the recorded host key."""

    name, description, keepable = "key-login", "log in with the key", False
    kernel = ""

    def run(self, ctx: BuildContext) -> None:
        assert ctx.guest_ip is not None and ctx.guest_password is None
        with GuestSSH.connect(
            ctx.guest_ip,
            port=ctx.ssh_port,
            pkey=keys.load_key(),
            expected_host_key=ctx.guest_host_key,
            connect_retry_seconds=30,
        ) as ssh:
            type(self).kernel = ssh.run("uname -r").stdout_tail[-1]

    def undo(self, ctx: BuildContext) -> None:
        """Nothing to undo."""


def test_warm_clone_boots_without_console_or_upload(
    sim: SimServer, pb: Playbook, prepared: golden.TemplateInfo, ddk_xva: Path
) -> None:
    from xsddkvm.build import image_digest

    file_choice = ImageChoice("xva", path=ddk_xva, digest=image_digest(ddk_xva), label="ddk.xva")
    rec = Recorder()
    ctx = BuildContext(
        playbook=pb,
        xs=access_to(sim).session(),
        identity=BuildIdentity.new(),
        emit=rec,
        image=file_choice,
        output_dir=Path(pb.artifacts.output_dir),
        guest_ssh_port=sim.host.guests.ssh_port,
    )
    warm = golden.warm_stages([Connect, ProvisionVm, AddNetwork, Boot, golden.FirstBoot, WaitForIp])
    assert warm[1] is golden.ChooseGolden and golden.WarmFirstBoot in warm
    mark = sim.host.state.generation
    run_stages([stage() for stage in warm] + [_KeyLogin()], ctx)
    assert ctx.cloned_from_template and ctx.image.template == prepared.ref
    assert _KeyLogin.kernel == "4.19.0+1"
    assert import_tasks(sim, mark) == []
    assert "first-boot" in ctx.timings and "console" not in {e.source for e in rec.of(LogLine)}
    left = leftovers(sim)
    assert [vm["uuid"] for vm in left["VM"]] == [prepared.uuid]  # the clone is gone


def test_a_template_of_another_image_is_not_used(
    sim: SimServer, pb: Playbook, prepared: golden.TemplateInfo
) -> None:
    other = ImageChoice("xva", path=Path("other.xva"), digest="0" * 64, label="other.xva")
    with access_to(sim).session() as xs:
        assert golden.find_matching(xs, other.digest) is None
        assert golden.choose_image(xs, pb, other) is other
        pb.image.golden = "never"
        same = ImageChoice("xva", digest=prepared.image_sha256, label="ddk.xva")
        assert golden.choose_image(xs, pb, same) is same


def test_a_failed_prepare_leaves_nothing(sim: SimServer, pb: Playbook) -> None:
    key = keys.ensure_key()
    keys.key_path().chmod(0o644)  # InstallKey refuses a key others can read
    assert key is not None
    with pytest.raises(AuthError, match="can be read by other users"):
        golden.prepare(pb, access_to(sim), Recorder())
    assert leftovers(sim) == {}


def test_cli_lists_and_removes_templates(sim: SimServer, prepared: golden.TemplateInfo) -> None:
    pin = ["--password-env", PASSWORD_ENV, "--tls-fingerprint", sim.fingerprint]
    code, stdout, _ = run_cli("image", "list", sim.url, *pin, "--json")
    assert code == 0
    assert [t["uuid"] for t in json.loads(stdout)] == [prepared.uuid]
    dom0 = sim.host.state.get("host", sim.host.master)["control_domain"]
    dom0_uuid = sim.host.state.get("VM", dom0)["uuid"]
    code, _, stderr = run_cli("image", "rm", sim.url, dom0_uuid, *pin)
    assert code == ExitCode.CONFIG and "not a golden DDK template" in stderr
    code, stdout, _ = run_cli("image", "rm", sim.url, prepared.uuid, *pin)
    assert code == 0 and "1 disk" in stdout
    assert leftovers(sim) == {}
    with access_to(sim).session() as xs, pytest.raises(ConfigError, match="does not exist"):
        golden.remove(xs, prepared.uuid)


def test_cli_warm_build_skips_import_and_fresh_forces_it(
    sim: SimServer, prepared: golden.TemplateInfo, ddk_xva: Path, tmp_path: Path
) -> None:
    playbook = write_playbook(sim, tmp_path, ddk_xva)
    mark = sim.host.state.generation
    code, stdout, stderr = run_cli("build", str(playbook), "--json")
    assert code == 0, stderr[-2000:]
    assert import_tasks(sim, mark) == []
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ddk"]["golden_template"] is True
    started = [json.loads(line).get("stage") for line in stdout.splitlines()]
    assert "first-boot" in started  # the warm variant, which never opens the console
    mark = sim.host.state.generation
    code, _, stderr = run_cli("build", str(playbook), "--fresh")
    assert code == 0, stderr[-2000:]
    assert import_tasks(sim, mark) != []
    assert [vm["uuid"] for vm in leftovers(sim)["VM"]] == [prepared.uuid]
