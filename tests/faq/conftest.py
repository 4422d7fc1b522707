"""The built-in matcher (jieba loaded once per test session) and the labelled evaluation set."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.faq import FaqMatcher

EVAL_SET = Path(__file__).with_name("eval_set.tsv")


def eval_rows() -> list[tuple[str, str]]:
    """(label, text) pairs; `#` lines are comments."""
    rows = []
    for number, line in enumerate(EVAL_SET.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, text = line.partition("\t")
        assert sep, f"{EVAL_SET.name}:{number}: expected label<TAB>text"
        assert text.strip(), f"{EVAL_SET.name}:{number}: empty text"
        rows.append((label, text))
    return rows


@pytest.fixture(scope="session")
def matcher() -> FaqMatcher:
    return FaqMatcher.default()
