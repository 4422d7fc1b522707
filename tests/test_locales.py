"""Every message id the code uses exists in zh_CN and en, with the same placeholders."""

from __future__ import annotations

import ast
import re
import string
import sys
from pathlib import Path

import pytest

import fulfillment.errors as errors
from locales import LANGUAGES, Translator, load_catalogue, normalise_language
from storage.records import OrderState, PaymentOutcome

ROOT = Path(__file__).resolve().parents[1]
LITERAL_ID = re.compile(r"""(?:_t|tr|\.tr)\((?:lang|[a-z_.]+), "([a-z_]+\.[a-z_.]+)\"""")


def used_ids() -> set[str]:
    ids: set[str] = set()
    for folder in ("handlers", "bot", "fulfillment"):
        for path in (ROOT / folder).rglob("*.py"):
            ids |= set(LITERAL_ID.findall(path.read_text(encoding="utf-8")))
    ids |= {f"state.{s.value}" for s in OrderState}
    ids |= {f"pay.result.{o.value}" for o in PaymentOutcome}
    ids |= {cls.message_id for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.ShopError)}
    return ids


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_code_uses_message_ids_found_by_the_scanner():
    assert {"menu.welcome", "delivery.header", "merchant.stock_pool", "error.out_of_stock"} <= used_ids()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_used_message_id_is_translated(lang):
    catalogue = load_catalogue(lang)
    missing = sorted(used_ids() - set(catalogue))
    assert missing == []


def test_catalogues_have_the_same_ids_and_placeholders():
    en, zh = load_catalogue("en"), load_catalogue("zh_CN")
    assert set(en) == set(zh)
    assert {k for k in en if placeholders(en[k]) != placeholders(zh[k])} == set()


def test_money_is_exact_and_per_locale():
    tr = Translator()
    assert tr.money("zh_CN", 990, "CNY") == "¥9.90"
    assert tr.money("en", 123456789, "CNY") == "CN¥1,234,567.89"
    assert tr.money("en", 50, "XTR") == "⭐ 50"


@pytest.mark.parametrize(("code", "expected"), [("zh-hans", "zh_CN"), ("zh", "zh_CN"), ("en-US", "en"),
                                                 ("fr", "zh_CN"), (None, "zh_CN")])
def test_platform_languages_map_to_supported_locales(code, expected):
    assert normalise_language(code) == expected


#: language names are shown in their own language on purpose (a reader of the other one must find theirs)
OWN_NAMES = {"简体中文", "English"}
WORDY = re.compile(r"[A-Za-z]{3,}|[\u4e00-\u9fff]")


def literal_texts() -> list[str]:
    """Human text written straight into a Reply or Button in the conversations instead of a message id."""
    found = []
    for path in (ROOT / "handlers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "func", None)
            if not isinstance(node, ast.Call) or getattr(name, "id", getattr(name, "attr", "")) not in ("Reply",
                                                                                                          "Button"):
                continue
            for arg in node.args[:1] + [k.value for k in node.keywords if k.arg in ("text", "label")]:
                parts = [arg.value] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else [
                    v.value for v in getattr(arg, "values", []) if isinstance(v, ast.Constant)]
                if any(WORDY.search(p) for p in parts if p not in OWN_NAMES):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_conversations_write_no_text_outside_the_catalogue():
    assert literal_texts() == []


def test_the_scanner_finds_literal_text(tmp_path, monkeypatch):
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "bad.py").write_text('Reply("Thanks for your order")\nReply(tr(lang, "a.b"))\n'
                                                  'Button(f"支付 {x}", "pay")\n', encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert literal_texts() == ["handlers/bad.py:1", "handlers/bad.py:3"]
