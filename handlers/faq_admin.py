"""Merchant FAQ entries edited in chat: /faq list | add | remove, applied without a restart.

    /faq add hours 几点发货 | when do you ship => 全天自动发货 | We deliver day and night
    /faq remove hours

Examples are split on `|` before `=>`, answers after it; each goes to the Chinese or the English side by its
script. Adding an existing merchant id replaces that entry (that is the edit). Built-in intents are answered
by the assistant itself and cannot be added or removed here.

The merchant entries are kept as TOML in the shared key-value table, so every process sees them: each process
checks for a change at most every REFRESH seconds and rebuilds its matcher (built-ins + merchant entries).
"""

from __future__ import annotations

import logging
import re
import time

from handlers.aftersales import faq_matcher
from handlers.context import ShopContext
from handlers.faq import BUILTIN_INTENTS, FaqEntry, FaqFileError, FaqMatcher, MatcherSettings
from handlers.faq.entries import dump_toml, parse_toml
from handlers.types import Incoming, Reply

log = logging.getLogger("kamibot.faq")
REFRESH = 10.0  # seconds between checks for entries changed by another process
MAX_ENTRIES = 200
MAX_FIELD = 500
_CJK = re.compile(r"[\u3400-\u9fff]")


def _sides(parts: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    zh = tuple(p for p in parts if _CJK.search(p))
    en = tuple(p for p in parts if not _CJK.search(p))
    return zh, en


def parse_add(rest: str) -> FaqEntry:
    """`ID EXAMPLE | EXAMPLE … => ANSWER [| ANSWER]` → a merchant entry; FaqFileError names the problem."""
    entry_id, _, body = rest.strip().partition(" ")
    examples, arrow, answers = body.partition("=>")
    if not arrow:
        raise FaqFileError("expected: /faq add ID EXAMPLE | EXAMPLE => ANSWER")
    ex = [p.strip()[:MAX_FIELD] for p in examples.split("|") if p.strip()]
    an = [p.strip()[:MAX_FIELD] for p in answers.split("|") if p.strip()]
    ex_zh, ex_en = _sides(ex)
    an_zh, an_en = _sides(an)
    if len(an_zh) > 1 or len(an_en) > 1:
        raise FaqFileError("one answer per language")
    if entry_id in BUILTIN_INTENTS:
        raise FaqFileError(f"{entry_id!r} is a built-in intent")
    return FaqEntry(entry_id.lower(), examples_zh=ex_zh, examples_en=ex_en, answer_zh="".join(an_zh),
                    answer_en="".join(an_en))


class MerchantFaq:
    """The process's view of the merchant FAQ entries, and the /faq command."""

    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx
        self._base: FaqMatcher | None = None  # the matcher without merchant entries
        self._text = ""  # the stored entries this process last applied
        self._checked = float("-inf")

    def _t(self, lang: str, msgid: str, **params: object) -> str:
        return self.ctx.tr(lang, msgid, **params)

    async def current(self) -> FaqMatcher:
        """The matcher to classify with, refreshed when another process changed the entries."""
        if self._base is None:
            self._base = await faq_matcher(self.ctx)
        if time.monotonic() - self._checked >= REFRESH:
            self._checked = time.monotonic()
            text = await self.ctx.services.faq_entries.load()
            if text != self._text:
                self._apply(text)
        return await faq_matcher(self.ctx)

    def _apply(self, text: str) -> None:
        assert self._base is not None
        try:
            entries = parse_toml(text)[0] if text.strip() else ()
        except FaqFileError:
            log.exception("event=faq.stored_entries_unusable")
            return
        self.ctx.faq = self._base.with_entries(*entries) if entries else self._base
        self._text = text
        log.info("event=faq.entries_applied merchant_entries=%s", len(entries))

    def merchant_entries(self) -> tuple[FaqEntry, ...]:
        return parse_toml(self._text)[0] if self._text.strip() else ()

    async def _store(self, entries: tuple[FaqEntry, ...]) -> None:
        text = dump_toml(entries, MatcherSettings()) if entries else ""
        await self.ctx.services.faq_entries.save(text)
        self._apply(text)

    async def handle(self, msg: Incoming, lang: str, rest: str) -> list[Reply]:
        sub, _, args = rest.strip().partition(" ")
        self._checked = float("-inf")  # a command starts from what is stored now, not from a cached view
        await self.current()
        if sub in ("", "list"):
            return [Reply(self._list(lang))]
        if sub in ("add", "edit"):
            await self.ctx.services.audit.record(msg.channel, msg.user_id, "faq", f"add {args.partition(' ')[0]}")
            try:
                entry = parse_add(args)
                kept = tuple(e for e in self.merchant_entries() if e.id != entry.id)
                if len(kept) >= MAX_ENTRIES:
                    raise FaqFileError(f"at most {MAX_ENTRIES} merchant entries")
                FaqMatcher([*kept, entry])  # checked as a whole before it is stored
            except FaqFileError as exc:
                return [Reply(self._t(lang, "after.faq_refused", error=str(exc)))]
            await self._store((*kept, entry))
            return [Reply(self._t(lang, "after.faq_added", id=entry.id, examples=len(entry.examples_zh) +
                                  len(entry.examples_en)))]
        if sub == "remove" and args.strip():
            entry_id = args.strip().lower()
            await self.ctx.services.audit.record(msg.channel, msg.user_id, "faq", f"remove {entry_id}")
            entries = self.merchant_entries()
            if entry_id not in {e.id for e in entries}:
                return [Reply(self._t(lang, "after.faq_not_found", id=entry_id))]
            await self._store(tuple(e for e in entries if e.id != entry_id))
            return [Reply(self._t(lang, "after.faq_removed", id=entry_id))]
        return [Reply(self._t(lang, "after.faq_usage"))]

    def _list(self, lang: str) -> str:
        lines = [self._t(lang, "after.faq_builtin", ids=", ".join(BUILTIN_INTENTS))]
        entries = self.merchant_entries()
        if not entries:
            lines.append(self._t(lang, "after.faq_none"))
        for e in entries:
            lines.append(self._t(lang, "after.faq_line", id=e.id, examples=" | ".join((*e.examples_zh,
                                 *e.examples_en))[:200], answer=e.answer(lang)[:200]))
        lines.append(self._t(lang, "after.faq_usage"))
        return "\n".join(lines)
