"""Playbook loading: defaults, precedence and errors that name file: key.path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xsddkvm.config import apply_overrides, load_playbook, read_secret_file, resolve_password
from xsddkvm.errors import AuthError, ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pb.yml"
    path.write_text(text)
    return path


def test_shipped_playbook_loads_with_defaults() -> None:
    pb = load_playbook(REPO / "playbooks" / "helloworld.yml")
    assert pb.host.url == "sim://default"
    assert pb.build.targets == ["build-srctarballs", "build-iso"]
    assert pb.timeouts.import_ == 3600.0
    assert pb.resolve(pb.source.dir) == REPO / "xsddkvm" / "templates" / "helloworld"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("build:\n  targets: [a, 3]\n", "pb.yml: build.targets[1]: expected a string, got int 3"),
        ("bulid: {}\n", "pb.yml: bulid: unknown key; did you mean 'build'?"),
        ("vm:\n  memroy_mib: 4\n", "vm.memroy_mib: unknown key; did you mean 'memory_mib'?"),
        ("vm:\n  vcpus: two\n", "vm.vcpus: expected a whole number, got str 'two'"),
        ("vm:\n  first_boot: auto\n", "vm.first_boot: expected one of 'console', 'noninteractive'"),
        ("host: [1]\n", "host: expected a mapping of settings"),
        ("host:\n  url: ftp://x\n", "host.url: 'ftp://x' is not a host URL"),
        ("source:\n  remote_dir: /root/x\n", "source.remote_dir: '/root/x' must be relative"),
        ("timeouts:\n  import: fast\n", "timeouts.import: expected a number"),
        ("host:\n  url: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_playbook(write(tmp_path, text))
    assert expected in err.value.paragraph()
    assert str(tmp_path / "pb.yml") in err.value.message


def test_missing_playbook(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such playbook"):
        load_playbook(tmp_path / "absent.yml")


def test_flags_override_the_file(tmp_path: Path) -> None:
    pb = load_playbook(write(tmp_path, "host:\n  url: https://a.lab\n"))
    apply_overrides(pb, host="https://b.lab", insecure=True, output_dir=tmp_path / "o", fresh=True)
    assert (pb.host.url, pb.host.insecure, pb.image.golden) == ("https://b.lab", True, "never")
    assert pb.artifacts.output_dir == str(tmp_path / "o")


def test_password_from_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    os.chmod(secret_file, 0o600)
    pb = load_playbook(write(tmp_path, "host:\n  password_env: PB_PW\n  password_file: pw\n"))
    monkeypatch.setenv("PB_PW", "from-env")
    assert resolve_password(pb).reveal() == "from-env"
    monkeypatch.delenv("PB_PW")
    assert resolve_password(pb).reveal() == "from-file"


def test_group_readable_secret_file_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("x")
    os.chmod(secret_file, 0o644)
    with pytest.raises(AuthError) as err:
        read_secret_file(secret_file, "password")
    assert "chmod 600" in err.value.paragraph()


def test_no_password_source_says_what_to_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XSDDKVM_PASSWORD", raising=False)
    pb = load_playbook(write(tmp_path, "host:\n  url: https://a.lab\n"))
    with pytest.raises(AuthError) as err:
        resolve_password(pb)
    assert "Export XSDDKVM_PASSWORD" in err.value.paragraph()
