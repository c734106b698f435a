"""A signal during cleanup waits for the cleanup, then takes effect."""

from __future__ import annotations

import signal

import pytest

from xsddkvm.cli import Env
from xsddkvm.errors import Interrupted
from xsddkvm.exit_codes import ExitCode


def test_a_signal_outside_cleanup_interrupts_at_once() -> None:
    with pytest.raises(Interrupted) as err:
        Env()._on_signal(signal.SIGTERM, None)
    assert err.value.exit_code == ExitCode.TERMINATED


def test_a_signal_during_cleanup_is_raised_after_it() -> None:
    env = Env()
    finished = False
    with pytest.raises(Interrupted) as err:
        with env.signals_deferred():
            env._on_signal(signal.SIGINT, None)  # must not raise here
            finished = True
    assert finished and err.value.exit_code == ExitCode.INTERRUPTED


def test_an_error_during_cleanup_is_not_replaced_by_the_signal() -> None:
    env = Env()
    with pytest.raises(ValueError):
        with env.signals_deferred():
            env._on_signal(signal.SIGINT, None)
            raise ValueError("cleanup failed")
