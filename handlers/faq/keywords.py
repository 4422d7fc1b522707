"""Finding an entry's keywords in a message: Chinese phrases (one character more or less tolerated) and
English word sequences (in order, not denied)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.faq.english import NEGATORS

_CJK = "[\u3400-\u9fff]"


GAP = "*"  # in a Chinese keyword: up to MAX_GAP characters of anything ("付款*失败" finds 付款一直提示失败)
MAX_GAP = 6


@dataclass(frozen=True)
class Phrase:
    """A Chinese keyword with the near forms customers type: one character dropped (已兑换 for 已被兑换) or
    one put in (没有发货 for 没发货). A keyword with gaps (付款*失败) matches as written or not at all."""

    text: str
    dropped: tuple[str, ...]
    inserted: re.Pattern[str] | None
    gapped: re.Pattern[str] | None = None

    @classmethod
    def of(cls, text: str) -> Phrase:
        if GAP in text:
            parts = [re.escape(p) for p in text.split(GAP) if p]
            return cls(text.replace(GAP, ""), (), None, re.compile(f".{{0,{MAX_GAP}}}?".join(parts)))
        dropped = tuple(dict.fromkeys(text[:i] + text[i + 1 :] for i in range(len(text)))) if len(text) >= 4 else ()
        inserted = None
        if len(text) >= 3:
            gaps = "|".join(re.escape(text[:i]) + _CJK + re.escape(text[i:]) for i in range(1, len(text)))
            inserted = re.compile(gaps)
        return cls(text, dropped, inserted)

    def find(self, compact: str) -> tuple[int, int] | None:
        """(start, end) of the phrase as written in the text, or None."""
        if self.gapped:
            found = self.gapped.search(compact)
            return (found.start(), found.end()) if found else None
        at = compact.find(self.text)
        return (at, at + len(self.text)) if at >= 0 else None

    def find_near(self, compact: str) -> tuple[int, int] | None:
        """(start, end) of a near form of the phrase in the text, or None."""
        for near in self.dropped:
            at = compact.find(near)
            if at >= 0:
                return at, at + len(near)
        found = self.inserted.search(compact) if self.inserted else None
        return (found.start(), found.end()) if found else None


def denied_at(compact: str, at: int) -> bool:
    """A Chinese negation right before a keyword ("不用退款")."""
    return any(compact[max(0, at - len(n)) : at] == n for n in NEGATORS)


def sequence_found(words: tuple[str, ...], seq: tuple[str, ...], negated: frozenset[int]) -> bool:
    """An English keyword's words in order, at most one other word between two of them, not denied
    (unless the keyword itself says no: "didn't get", "no code")."""
    if not words:
        return False
    denies = any(w in NEGATORS for w in words)
    for start, word in enumerate(seq):
        if word != words[0] or (start in negated and not denies):
            continue
        at = start
        for want in words[1:]:
            at = next((j for j in range(at + 1, min(at + 3, len(seq))) if seq[j] == want), -1)
            if at < 0:
                break
        if at >= 0:
            return True
    return False
