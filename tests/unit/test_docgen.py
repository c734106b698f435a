"""Generated reference pages: committed copies match the code, and cover all of it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import pytest

from xsddkvm.config import key_of, public_fields
from xsddkvm.docgen import (
    MEANINGS,
    PAGES,
    render_exit_codes,
    render_playbook_reference,
    sections,
    type_name,
)
from xsddkvm.exit_codes import ExitCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_committed_page_matches_the_code(page: str) -> None:
    committed = (DOCS / page).read_text(encoding="utf-8")
    assert committed == PAGES[page](), (
        f"docs/{page} is out of date: regenerate it with `python -m xsddkvm.docgen` and commit it."
    )


def test_every_exit_code_has_a_meaning() -> None:
    assert set(MEANINGS) == set(ExitCode)
    assert all(text.strip().endswith(".") for text in MEANINGS.values())
    page = render_exit_codes()
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` | {MEANINGS[code]} |" in page


def test_every_playbook_key_is_documented() -> None:
    page = render_playbook_reference()
    for name, doc, cls in sections():
        assert f"## `{name}`\n\n{doc}\n" in page
        for field in public_fields(cls):
            assert f"| `{name}.{key_of(field)}` |" in page
    assert "| `timeouts.import` |" in page  # the key, not the Python name import_
    assert "| `build.responders[].prompt` |" in page


@pytest.mark.parametrize(
    ("hint", "words"),
    [
        (Optional[str], "string or null"),
        (Literal["auto", "never"], "one of `auto`, `never`"),
        (list[str], "list of strings"),
        (float, "number"),
        (bool, "true/false"),
    ],
)
def test_type_names(hint: object, words: str) -> None:
    assert type_name(hint) == words
