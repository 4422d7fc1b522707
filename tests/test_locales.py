"""Every message id the code uses exists in zh_CN and en, with the same placeholders."""

from __future__ import annotations

import re
import string
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
