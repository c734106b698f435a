"""`xsddkvm --version` and click's shell completion (docs/quickstart.md "Shell completion")."""

from __future__ import annotations

from importlib.metadata import version

from click.testing import CliRunner

from xsddkvm import __version__
from xsddkvm.cli import main


def invoke(*args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), prog_name="xsddkvm", env=env)
    return result.exit_code, result.output


def test_version_names_xsddkvm_xenapi_and_paramiko() -> None:
    code, output = invoke("--version")
    assert code == 0
    assert output.splitlines() == [
        f"xsddkvm {__version__}",
        f"XenAPI {version('XenAPI')}",
        f"paramiko {version('paramiko')}",
    ]


def test_bash_source_prints_a_completion_script() -> None:
    code, output = invoke(_XSDDKVM_COMPLETE="bash_source")
    assert code == 0
    assert "_xsddkvm_completion()" in output
    assert "complete -o nosort -F _xsddkvm_completion xsddkvm" in output


def test_completion_offers_subcommands_and_options() -> None:
    def complete(line: str) -> list[str]:
        words = line.split(" ")
        code, output = invoke(
            _XSDDKVM_COMPLETE="bash_complete",
            COMP_WORDS=line,
            COMP_CWORD=str(len(words) - 1),
        )
        assert code == 0
        return [item.split(",", 1)[1] for item in output.splitlines()]

    assert {"build", "doctor", "init", "sim", "host"} <= set(complete("xsddkvm "))
    assert complete("xsddkvm sim ins") == ["inspect"]
    assert complete("xsddkvm build pb.yml --keep") == ["--keep-vm"]
    assert complete("xsddkvm build pb.yml --keep-vm ") == ["never", "on-failure", "always"]


def test_zsh_and_fish_scripts_are_available() -> None:
    for shell in ("zsh", "fish"):
        code, output = invoke(_XSDDKVM_COMPLETE=f"{shell}_source")
        assert code == 0 and "_XSDDKVM_COMPLETE" in output
