"""`xsddkvm init`: a playbook that loads and a skeleton with the driver name everywhere."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xsddkvm.cli_firstday import register
from xsddkvm.config import Playbook, key_of, load_playbook, public_fields
from xsddkvm.docgen import sections
from xsddkvm.errors import ConfigError
from xsddkvm.exit_codes import ExitCode
from xsddkvm.init import InitOptions, init_project, render_playbook, skeleton

REPO = Path(__file__).resolve().parents[2]
SKELETON = {"Makefile", "mydrv.spec", "src/Kbuild", "src/mydrv.c"}


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    """The CLI installs SIGINT/SIGTERM handlers; put pytest's back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def run_init(*args: str) -> click.testing.Result:
    group = click.Group("xsddkvm")
    register(group)
    return CliRunner().invoke(group, ["init", *args], catch_exceptions=False)


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_init_writes_a_playbook_that_loads_and_a_named_skeleton(tmp_path: Path) -> None:
    result = run_init(str(tmp_path), "--driver-name", "mydrv", "--no-input")
    assert result.exit_code == 0, result.output
    pb = load_playbook(tmp_path / "mydrv.yml")
    assert pb.host.url == "sim://default"
    assert pb.image.source == "sim:8.2.1"
    assert pb.resolve(pb.source.dir) == (tmp_path / "src").resolve()
    assert pb.source.remote_dir == "xsddkvm-build/mydrv"
    assert pb.verify.modules == ["mydrv"]
    assert tree(tmp_path / "src") == SKELETON
    for path in (tmp_path / "src").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "helloworld" not in text, path
    src = tmp_path / "src"
    assert (src / "src" / "Kbuild").read_text().strip() == "obj-m := mydrv.o"
    assert "module_init(mydrv_init);" in (src / "src" / "mydrv.c").read_text()
    assert "Name:           mydrv-%{kernel_version}-modules" in (src / "mydrv.spec").read_text()
    makefile = (src / "Makefile").read_text()
    assert "NAME        := mydrv" in makefile
    for target in ("build-srctarballs", "build-rpms", "build-iso"):
        assert f"\n{target}:" in makefile
    assert "\n\tmkdir -p $(TOPDIR)/SOURCES" in makefile  # recipes keep their tabs


def test_skeleton_has_the_shape_of_the_example() -> None:
    example = REPO / "xsddkvm" / "templates" / "helloworld"
    assert set(skeleton("helloworld")) == tree(example)
    ported = skeleton("helloworld")
    assert ported["src/Kbuild"] == (example / "src" / "Kbuild").read_text()
    assert (
        ported["helloworld.spec"].splitlines()[0]
        == ((example / "helloworld.spec").read_text().splitlines()[0])
    )


def test_every_schema_key_is_in_the_playbook_with_its_doc() -> None:
    text = render_playbook(InitOptions("mydrv"))
    for name, doc, cls in sections():
        assert f"\n# {doc}\n{name}:\n" in text
        for field in public_fields(cls):
            assert f"  {key_of(field)}: " in text or f"  # {key_of(field)}: " in text
            assert field.metadata["doc"].split()[0] in text


def test_commented_defaults_load_as_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pb.yml"
    path.write_text(render_playbook(InitOptions("mydrv")))
    pb, defaults = load_playbook(path), Playbook()
    assert pb.vm == defaults.vm and pb.build == defaults.build and pb.timeouts == defaults.timeouts


def test_real_host_with_password_file(tmp_path: Path) -> None:
    opts = InitOptions(
        "nic_drv", "https://xs1.lab", "/isos/XenServer-8.2.1-DDK.iso", password_file="pw"
    )
    init_project(tmp_path, opts)
    pb = load_playbook(tmp_path / "nic_drv.yml")
    assert (pb.host.url, pb.image.source, pb.host.password_file) == (
        "https://xs1.lab",
        "/isos/XenServer-8.2.1-DDK.iso",
        "pw",
    )


def test_real_host_needs_an_image(tmp_path: Path) -> None:
    result = run_init(str(tmp_path), "--driver-name", "d", "--host-url", "https://xs1.lab")
    assert result.exit_code == 2
    assert "--image" in result.output
    with pytest.raises(ConfigError, match="simulated DDK"):
        init_project(tmp_path, InitOptions("d", host_url="https://xs1.lab"))
    assert not any(tmp_path.iterdir())


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "mydrv.yml").write_text("# mine\n")
    with pytest.raises(ConfigError) as caught:
        init_project(tmp_path, InitOptions("mydrv"))
    assert str(tmp_path / "mydrv.yml") in caught.value.message
    assert (tmp_path / "mydrv.yml").read_text() == "# mine\n"
    assert not (tmp_path / "src").exists()
    result = run_init(str(tmp_path), "--driver-name", "mydrv", "--no-input")
    assert result.exit_code == ExitCode.CONFIG
    assert "already exists" in result.output


def test_existing_source_dir_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Makefile").write_text("all:\n")
    written = init_project(tmp_path, InitOptions("mydrv"))
    assert written == [tmp_path / "mydrv.yml"]
    assert tree(tmp_path / "src") == {"Makefile"}


def test_chosen_source_dir(tmp_path: Path) -> None:
    init_project(tmp_path, InitOptions("mydrv", source_dir="mydrv"))
    assert tree(tmp_path / "mydrv") == SKELETON
    assert load_playbook(tmp_path / "mydrv.yml").source.dir == "mydrv"


@pytest.mark.parametrize("name", ["MyDrv", "1drv", "my-drv", "my drv", "_drv", "drv.ko", ""])
def test_bad_driver_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not valid"):
        init_project(tmp_path, InitOptions(name))
    assert not any(tmp_path.iterdir())


def test_bad_driver_name_on_the_command_line(tmp_path: Path) -> None:
    result = run_init(str(tmp_path), "--driver-name", "My-Drv", "--no-input")
    assert result.exit_code == ExitCode.CONFIG
    assert "not valid" in result.output


def test_no_driver_name_without_a_terminal(tmp_path: Path) -> None:
    result = run_init(str(tmp_path), "--no-input")
    assert result.exit_code == 2
    assert "--driver-name" in result.output
