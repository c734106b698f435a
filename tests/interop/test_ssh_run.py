"""GuestSSH.run against a real sshd: streaming, exit status, prompts, stdin, timeouts."""

from __future__ import annotations

import re
import time

import pytest

from xsddkvm.errors import BuildError, GuestError
from xsddkvm.guest.ssh import GuestSSH, Responder
from xsddkvm.secrets import Secret


def collect(guest: GuestSSH, command: str, **kw: object) -> tuple[list[tuple[str, str]], int]:
    lines: list[tuple[str, str]] = []
    result = guest.run(command, on_line=lambda s, line: lines.append((s, line)), **kw)  # type: ignore[arg-type]
    return lines, result.exit_status


def test_streams_lines_in_order_with_exit_status(guest: GuestSSH) -> None:
    lines, status = collect(guest, "for i in 1 2 3; do echo out-$i; done; echo err >&2; echo out-4")
    assert status == 0
    assert [line for s, line in lines if s == "stdout"] == ["out-1", "out-2", "out-3", "out-4"]
    assert [line for s, line in lines if s == "stderr"] == ["err"]


def test_lines_arrive_while_the_command_runs(guest: GuestSSH) -> None:
    seen: list[float] = []
    guest.run("echo a; sleep 1; echo b", on_line=lambda s, line: seen.append(time.monotonic()))
    assert seen[1] - seen[0] > 0.5  # buffered output would arrive all at once at the end


def test_failing_command_raises_build_error_with_status_and_last_lines(guest: GuestSSH) -> None:
    with pytest.raises(BuildError) as info:
        guest.run("seq 1 40; exit 3")
    err = info.value
    assert err.exit_status == 3
    assert err.command == "seq 1 40; exit 3"
    assert err.last_lines == [str(i) for i in range(21, 41)]
    assert "status 3" in err.message and err.hint


def test_check_false_returns_the_status_and_tail(guest: GuestSSH) -> None:
    result = guest.run("seq 1 60; exit 7", check=False)
    assert result.exit_status == 7
    assert result.stdout_tail == [str(i) for i in range(11, 61)]


def test_stdin_is_closed_so_a_read_never_hangs(guest: GuestSSH) -> None:
    result = guest.run("read x; echo status-$?", timeout=10)
    assert result.stdout_tail == ["status-1"]


def test_stdin_bytes_are_sent_then_closed(guest: GuestSSH) -> None:
    assert guest.run("wc -c", stdin=b"x" * 300_000).stdout_tail == ["300000"]


def test_responder_answers_a_prompt_with_a_secret_not_on_argv(guest: GuestSSH) -> None:
    secret = Secret("pw-" + "q7Zr2" * 3)
    lines, _ = collect(
        guest,
        "printf 'Enter passphrase for key: '; read x; ps -eo args; echo got-$x",
        responders=[Responder(re.compile(r"passphrase for .*: $"), secret)],
    )
    texts = [line for _, line in lines]
    assert texts[0] == "Enter passphrase for key: "  # the prompt is flushed as its own line
    assert texts[-1] == f"got-{secret.reveal()}"
    assert not any(secret.reveal() in line for line in texts[:-1])  # not in any process's argv


def test_unanswered_prompt_stops_the_command_naming_it(guest: GuestSSH) -> None:
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        guest.run("printf 'Password for vault: '; sleep 5", prompt_timeout=0.5)
    assert time.monotonic() - started < 10
    assert "'Password for vault:'" in info.value.message
    assert "build.responders" in (info.value.hint or "")


def test_prompt_no_responder_matches_fails_fast(guest: GuestSSH) -> None:
    other = Responder(re.compile("Username: $"), "root")
    with pytest.raises(BuildError, match="Passphrase:"):
        guest.run("printf 'Passphrase: '; read x", responders=[other], prompt_timeout=0.5)


def test_timeout_stops_the_command(guest: GuestSSH) -> None:
    with pytest.raises(BuildError, match="did not finish within 0.5 s"):
        guest.run("echo started; sleep 5", timeout=0.5)
    assert guest.run("echo still-usable").stdout_tail == ["still-usable"]


def test_dropped_connection_is_a_guest_error(guest: GuestSSH) -> None:
    # Killing the shell's parent (the sshd session process) drops the TCP connection.
    with pytest.raises(GuestError, match="dropped"):
        guest.run("kill -9 $PPID; sleep 5", timeout=20)


def test_output_after_the_exit_status_is_kept(guest: GuestSSH) -> None:
    # The exit status can overtake output still in sshd's pipes: nothing may be lost.
    for _ in range(3):
        lines, _ = collect(guest, "seq 1 2000; seq 1 300 >&2")
        assert [line for s, line in lines if s == "stdout"] == [str(i) for i in range(1, 2001)]
        assert [line for s, line in lines if s == "stderr"] == [str(i) for i in range(1, 301)]


def test_a_background_child_holding_the_pipes_does_not_hang_run(guest: GuestSSH) -> None:
    result = guest.run("sleep 4 & echo started-daemon")
    assert result.stdout_tail == ["started-daemon"] and result.duration < 3.9
