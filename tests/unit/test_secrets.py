"""The Secret type never shows its value; redact() removes every registered value."""

from __future__ import annotations

import pickle

import pytest

from xsddkvm.secrets import Secret, generate_password, redact


def test_secret_prints_stars_everywhere() -> None:
    secret = Secret("hunter2-long")
    assert str(secret) == repr(secret) == f"{secret}" == "***"
    assert secret.reveal() == "hunter2-long"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_redact_removes_known_values_longest_first() -> None:
    Secret("abcd")
    Secret("abcdefgh")
    assert redact("x abcdefgh y abcd z") == "x *** y *** z"


def test_very_short_values_are_not_registered() -> None:
    Secret("x")
    assert redact("xylophone") == "xylophone"


def test_generated_passwords_are_random_and_alphanumeric() -> None:
    a, b = generate_password(), generate_password()
    assert a.reveal() != b.reveal() and a.reveal().isalnum() and len(a.reveal()) == 24
