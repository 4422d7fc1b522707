"""FAQ entries as data: the TOML file merchants edit, checked strictly, and written back."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

BUILTIN_INTENTS = (
    "code_invalid", "not_received", "how_to_redeem", "refund", "order_status", "payment_help", "price_stock",
    "invoice", "human", "greeting", "thanks",
)
# Intents whose answer changes something (report/replace a code, resend, refund request): never guessed.
ACTING_INTENTS = frozenset({"code_invalid", "not_received", "refund"})
SOCIAL_INTENTS = frozenset({"greeting", "thanks"})  # politeness around a question does not answer it
UNKNOWN = "unknown"

_ID = re.compile(r"[a-z][a-z0-9_]{0,47}")
_LISTS = ("examples_zh", "examples_en", "keywords_zh", "keywords_en")
_TEXTS = ("answer_zh", "answer_en")


class FaqFileError(ValueError):
    """The FAQ data is not usable; the message names the entry and the problem."""


@dataclass(frozen=True)
class FaqEntry:
    """One intent: example messages and keywords per language, and (for merchant entries) the answer.

    Built-in intents are answered by the conversation itself (with actions, through the locale catalogue),
    so their answers may be empty; a merchant entry must answer in at least one language.
    """

    id: str
    examples_zh: tuple[str, ...] = ()
    examples_en: tuple[str, ...] = ()
    keywords_zh: tuple[str, ...] = ()
    keywords_en: tuple[str, ...] = ()
    answer_zh: str = ""
    answer_en: str = ""

    def __post_init__(self) -> None:
        where = f"FAQ entry {self.id!r}"
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id) or self.id == UNKNOWN:
            raise FaqFileError(f"{where}: id must be lower-case letters, digits and _ (not 'unknown')")
        for name in _LISTS:
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
                raise FaqFileError(f"{where}: {name} must be a list of non-empty strings")
            object.__setattr__(self, name, tuple(v.strip() for v in value))
        for name in _TEXTS:
            if not isinstance(getattr(self, name), str):
                raise FaqFileError(f"{where}: {name} must be a string")
        if not (self.examples_zh or self.examples_en):
            raise FaqFileError(f"{where}: has no examples (examples_zh / examples_en)")
        if not self.builtin and not (self.answer_zh.strip() or self.answer_en.strip()):
            raise FaqFileError(f"{where}: a merchant entry needs answer_zh or answer_en")

    @property
    def builtin(self) -> bool:
        return self.id in BUILTIN_INTENTS

    @property
    def acting(self) -> bool:
        return self.id in ACTING_INTENTS

    def answer(self, language: str) -> str:
        """The answer in the language (zh… → Chinese), falling back to the other one."""
        first, second = (self.answer_zh, self.answer_en) if language.startswith("zh") else (self.answer_en,
                                                                                              self.answer_zh)
        return first or second


@dataclass(frozen=True)
class MatcherSettings:
    threshold: float = 0.5  # below it the answer is "unknown": ask or hand over
    acting_threshold: float = 0.6  # code_invalid / not_received / refund need more
    min_margin: float = 0.08  # a near tie between two intents is not an answer
    acting_margin: float = 0.15  # … and a smaller lead than this is not enough to act on
    # An acting intent also needs one of these words (or an order number) in the message: "工资还没发" is not
    # about an order. Chinese ones are searched as written, English ones as whole (stemmed) words.
    shop_words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "shop_words":
                if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
                    raise FaqFileError("[matcher] shop_words must be a list of non-empty strings")
                object.__setattr__(self, f.name, tuple(value))
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise FaqFileError(f"[matcher] {f.name} must be a number between 0 and 1")


def parse_toml(source: str | Path) -> tuple[tuple[FaqEntry, ...], MatcherSettings]:
    """Entries and settings from TOML text or a file path; any problem raises FaqFileError.

    A `str` is TOML text unless it is one line naming a .toml file; pass a `Path` to be explicit."""
    is_path = isinstance(source, Path) or ("\n" not in source and source.strip().endswith(".toml"))
    name, text = _read(source) if is_path else ("FAQ file", str(source))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FaqFileError(f"{name}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"matcher", "intent"}
    if unknown:
        raise FaqFileError(f"{name}: unknown section(s) {sorted(unknown)}; expected [matcher] and [[intent]]")
    raw_settings = data.get("matcher", {})
    if not isinstance(raw_settings, dict):
        raise FaqFileError(f"{name}: [matcher] must be a table")
    _no_unknown_keys(raw_settings, {f.name for f in fields(MatcherSettings)}, f"{name} [matcher]")
    settings = MatcherSettings(**raw_settings)
    raw_entries = data.get("intent", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise FaqFileError(f"{name}: no [[intent]] entries")
    entries = tuple(_entry(raw, i, name) for i, raw in enumerate(raw_entries, 1))
    check_unique(entries)
    return entries, settings


def _read(source: str | Path) -> tuple[str, str]:
    path = Path(source)
    try:
        return str(path), path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaqFileError(f"{path}: cannot read: {exc}") from exc


def _entry(raw: Any, number: int, name: str) -> FaqEntry:
    where = f"{name}: [[intent]] #{number}"
    if not isinstance(raw, dict) or "id" not in raw:
        raise FaqFileError(f"{where} has no id")
    _no_unknown_keys(raw, {f.name for f in fields(FaqEntry)}, f"{where} ({raw['id']!r})")
    values: dict[str, Any] = {k: tuple(v) if k in _LISTS and isinstance(v, list) else v for k, v in raw.items()}
    return FaqEntry(**values)


def _no_unknown_keys(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise FaqFileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def check_unique(entries: tuple[FaqEntry, ...]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise FaqFileError(f"FAQ entry {entry.id!r} is defined twice")
        seen.add(entry.id)


def dump_toml(entries: tuple[FaqEntry, ...], settings: MatcherSettings) -> str:
    """TOML text that parse_toml reads back to the same entries and settings."""
    out = ["[matcher]"] + [f"{f.name} = {_value(getattr(settings, f.name))}" for f in fields(MatcherSettings)]
    for entry in entries:
        out += ["", "[[intent]]", f"id = {_string(entry.id)}"]
        for name in _LISTS:
            values = getattr(entry, name)
            if values:
                out.append(f"{name} = {_value(values)}")
        out += [f"{name} = {_string(getattr(entry, name))}" for name in _TEXTS if getattr(entry, name)]
    return "\n".join(out) + "\n"


def _value(value: float | tuple[str, ...]) -> str:
    return f"[{', '.join(_string(v) for v in value)}]" if isinstance(value, tuple) else repr(value)


def _string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes: \" \\ \n \uXXXX); TOML also forbids a raw DEL.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
