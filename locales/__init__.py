"""Message catalogues (gettext .po, read with Babel) and per-locale money and date formatting.

Every user-facing string is a message id looked up here; `{name}` placeholders
are filled with str.format. The .po files are read at start (no compile step).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from importlib import resources

from babel.dates import format_datetime, get_timezone
from babel.messages.pofile import read_po
from babel.numbers import format_currency, get_currency_precision

LANGUAGES = ("zh_CN", "en")


def normalise_language(code: str | None, default: str = "zh_CN") -> str:
    """Map platform language codes (zh, zh-hans, zh-CN, en-US, …) to a supported locale."""
    if not code:
        return default
    low = code.lower().replace("-", "_")
    if low.startswith("zh"):
        return "zh_CN"
    if low.startswith("en"):
        return "en"
    return default


def load_catalogue(lang: str) -> dict[str, str]:
    path = resources.files(__package__).joinpath(lang, "LC_MESSAGES", "messages.po")
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


class Translator:
    def __init__(self, default: str = "zh_CN") -> None:
        self.default = default
        self.catalogues = {lang: load_catalogue(lang) for lang in LANGUAGES}

    def __call__(self, lang: str, msgid: str, **params: object) -> str:
        text = self.catalogues.get(lang, {}).get(msgid) or self.catalogues["en"].get(msgid) or msgid
        return text.format(**params) if params else text

    def money(self, lang: str, amount: int, currency: str) -> str:
        """Integer minor units to a localised amount, exactly (Decimal, never float)."""
        if currency == "XTR":
            return self("en" if lang not in LANGUAGES else lang, "money.stars", amount=amount)
        digits = get_currency_precision(currency)
        return format_currency(Decimal(amount).scaleb(-digits), currency, locale=lang)

    def when(self, lang: str, moment: datetime, tz: str) -> str:
        """A UTC time shown in the reader's zone."""
        return format_datetime(moment, "yyyy-MM-dd HH:mm", tzinfo=get_timezone(tz), locale=lang)
