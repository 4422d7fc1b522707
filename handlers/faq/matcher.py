"""Which FAQ intent a customer message is: fuzzy matching over the entries' examples and keywords.

Every entry's examples and keywords become patterns of features (jieba words and character bigrams for
Chinese, lightly stemmed Latin words for English, `{order}`/`{code}` placeholders). A message scores each
pattern by how much of the pattern it contains and how much of the message the pattern explains, both
weighted by how specific a feature is to one intent (idf over intents); English typos are mapped onto the
entries' vocabulary with rapidfuzz. The best pattern's score is the intent's confidence. Below the
threshold, or in a near tie, the answer is `unknown`: the conversation asks or hands over.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rapidfuzz import fuzz, process

from handlers.faq import text as tx
from handlers.faq.english import NEGATORS, stem_words
from handlers.faq.entries import (
    ACTING_INTENTS,
    SOCIAL_INTENTS,
    UNKNOWN,
    FaqEntry,
    FaqFileError,
    MatcherSettings,
    check_unique,
    dump_toml,
    parse_toml,
)
from handlers.faq.keywords import GAP, Phrase, denied_at, sequence_found

_KEYWORD_BASE = 0.7  # a keyword alone is strong evidence; the rest of the score is how much it explains
_NEAR_KEYWORD_BASE = 0.6  # a keyword with one character more or less ("已兑换" for "已被兑换")
_RECALL_WEIGHT = 1.5
_UNSEEN_WEIGHT = 0.6  # share of the mean feature weight given to message words no entry knows


@dataclass(frozen=True)
class Match:
    intent: str  # an entry id, or "unknown" below the threshold / in a near tie
    confidence: float  # 0..1, the best intent's score (also when the intent is "unknown")
    order_refs: tuple[str, ...] = ()  # order numbers in the text, e.g. ("K7Q2M9XHA3BC",)
    margin: float = 0.0  # confidence minus the runner-up intent's score
    best: str = UNKNOWN  # the best-scoring entry even when below the threshold ("did you mean …?")
    runner_up: str = UNKNOWN

    @property
    def known(self) -> bool:
        return self.intent != UNKNOWN


@dataclass(frozen=True)
class _Pattern:
    intent: int
    keyword: bool
    cjk: frozenset[str]  # CJK words + bigrams (+ placeholders)
    latin: frozenset[str]  # stemmed Latin words
    phrase: Phrase | None  # a Chinese keyword as searched in the compact text
    sequence: tuple[str, ...]  # an English keyword's words in order


@dataclass(frozen=True)
class _Message:
    cjk: frozenset[str]
    latin: frozenset[str]
    units: tuple[str, ...]  # what the message says, for "how much of it does a pattern explain"
    compact: str
    sequence: tuple[str, ...]  # Latin words in order, typos mapped
    negated: frozenset[int]  # positions in sequence right after "no/not/don't"


@dataclass
class _Index:
    patterns: list[_Pattern] = field(default_factory=list)
    postings: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    weight: dict[str, float] = field(default_factory=dict)
    latin_vocab: list[str] = field(default_factory=list)
    phrases: list[tuple[Phrase, _Pattern]] = field(default_factory=list)  # the Chinese keywords
    phrase_starts: dict[str, list[tuple[Phrase, _Pattern]]] = field(default_factory=dict)  # by first character
    totals: list[float] = field(default_factory=list)  # each pattern's summed feature weight
    unseen: float = 1.0


class FaqMatcher:
    """Immutable: merchant edits build a new matcher (`with_entries`, `replace_entries`), swapped atomically."""

    def __init__(self, entries: Iterable[FaqEntry], settings: MatcherSettings | None = None) -> None:
        self.entries: tuple[FaqEntry, ...] = tuple(entries)
        if not self.entries:
            raise FaqFileError("a FAQ matcher needs at least one entry")
        check_unique(self.entries)
        self.settings = settings or MatcherSettings()
        self._by_id = {e.id: e for e in self.entries}
        self._index = _build_index(self.entries)
        self._typos: dict[str, str] = {}
        self._shop_words = tuple(
            tx.compact(w) if not w.isascii() else stem_words([w.lower()])[0] for w in self.settings.shop_words)

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, source: str | Path) -> FaqMatcher:
        """From TOML text or a file path; a bad file raises FaqFileError naming the problem."""
        entries, settings = parse_toml(source)
        return cls(entries, settings)

    @classmethod
    def default(cls) -> FaqMatcher:
        """The built-in intents shipped with kamibot (handlers/faq/intents.toml)."""
        return cls.from_toml(resources.files("handlers.faq").joinpath("intents.toml").read_text(encoding="utf-8"))

    def with_entries(self, *entries: FaqEntry) -> FaqMatcher:
        """A new matcher where these entries are added, or replace the entries with the same id."""
        new = {e.id: e for e in entries}
        kept = [new.pop(e.id, e) for e in self.entries]
        return FaqMatcher([*kept, *new.values()], self.settings)

    def replace_entries(self, entries: Iterable[FaqEntry]) -> FaqMatcher:
        return FaqMatcher(entries, self.settings)

    def without(self, entry_id: str) -> FaqMatcher:
        if entry_id not in self._by_id:
            raise KeyError(entry_id)
        return FaqMatcher([e for e in self.entries if e.id != entry_id], self.settings)

    def entry(self, entry_id: str) -> FaqEntry | None:
        return self._by_id.get(entry_id)

    def dump_toml(self) -> str:
        return dump_toml(self.entries, self.settings)

    # -- classification -------------------------------------------------------------------------------

    def classify(self, text: str) -> Match:
        refs = tx.order_refs(text)
        msg = self._message(text)
        ranked = sorted(self._scores(msg).items(), key=lambda kv: kv[1], reverse=True)
        matter = [kv for kv in ranked if kv[0] not in SOCIAL_INTENTS and kv[1] >= self._needed(kv[0])]
        if matter:
            ranked = matter  # "退款 谢谢", "hi my code is invalid": the politeness is not the question
        best, top = ranked[0] if ranked else (UNKNOWN, 0.0)
        runner, second = ranked[1] if len(ranked) > 1 else (UNKNOWN, 0.0)
        margin = top - second
        s = self.settings
        intent = best if top >= self._needed(best) and margin >= s.min_margin else UNKNOWN
        if intent in ACTING_INTENTS and (
            margin < s.acting_margin  # a close second: ask, do not act
            or (runner in ACTING_INTENTS and second >= s.threshold)  # two actions ("退款还没到账")
            or not (refs or self._about_the_shop(msg))  # "工资还没发" is not about an order
        ):
            intent = UNKNOWN
        return Match(intent, round(top, 4), refs, round(margin, 4), best, runner)

    def _about_the_shop(self, msg: _Message) -> bool:
        if tx.CODE in msg.compact:
            return True
        return any(w in msg.compact if not w.isascii() else any(x.startswith(w) for x in msg.latin)
                   for w in self._shop_words)

    def _needed(self, intent: str) -> float:
        return self.settings.acting_threshold if intent in ACTING_INTENTS else self.settings.threshold

    def scores(self, text: str) -> dict[str, float]:
        """Each intent's score in 0..1 (intents without any matching feature are left out)."""
        return self._scores(self._message(text))

    def _scores(self, msg: _Message) -> dict[str, float]:
        idx = self._index
        touched: dict[int, float] = defaultdict(float)
        for f in msg.cjk | msg.latin:
            for p in idx.postings.get(f, ()):
                touched[p] += idx.weight[f]
        best: dict[int, float] = {}
        keywords: dict[int, list[_Pattern]] = defaultdict(list)
        chinese = not msg.compact.isascii()
        starting = {c for c in msg.compact if c in idx.phrase_starts} if chinese else set()
        candidates = [ph for c in starting for ph in idx.phrase_starts[c]]
        for pat in _phrases_found(msg.compact, candidates, near=False):
            keywords[pat.intent].append(pat)
        for p, shared in touched.items():
            pat = idx.patterns[p]
            if pat.keyword:
                if not pat.phrase and sequence_found(pat.sequence, msg.sequence, msg.negated):
                    keywords[pat.intent].append(pat)
                continue
            score = self._example_score(pat, msg, shared / idx.totals[p] if idx.totals[p] else 0.0)
            if score > best.get(pat.intent, 0.0):
                best[pat.intent] = score
        base = _KEYWORD_BASE
        if not keywords and chinese:  # near forms only count where no keyword is written out: they are guesses
            base = _NEAR_KEYWORD_BASE
            for pat in _phrases_found(msg.compact, idx.phrases, near=True):
                keywords[pat.intent].append(pat)
        for intent, pats in keywords.items():
            # all of an intent's keywords found explain the message together: "有没有真人客服" is more human
            # than price_stock because 真人 and 客服 both say so
            score = base + (1 - base) * self._explained(pats, msg)
            best[intent] = max(best.get(intent, 0.0), score)
        return {self.entries[i].id: score for i, score in best.items()}

    def _example_score(self, pat: _Pattern, msg: _Message, recall: float) -> float:
        precision = self._explained([pat], msg)
        b2 = _RECALL_WEIGHT**2  # F-beta: containing all of an example counts more than being all of one
        return 0.0 if recall + precision == 0 else (1 + b2) * recall * precision / (b2 * precision + recall)

    def _explained(self, pats: list[_Pattern], msg: _Message) -> float:
        """Weighted share of the message's words the patterns account for."""
        idx = self._index
        said = explained = 0.0
        for unit in msg.units:
            weight = idx.weight.get(unit, idx.unseen)
            said += weight
            if any(_accounts_for(pat, unit) for pat in pats):
                explained += weight
        return explained / said if said else 0.0

    def _message(self, text: str) -> _Message:
        norm = tx.normalise(text)
        words, bigrams, raw_latin = tx.features(norm)
        stemmed = stem_words(raw_latin)
        latin = [self._spell(word) for word in stemmed]
        negated = {j for i, word in enumerate(stemmed) if word in NEGATORS for j in range(i + 1, i + 4)}
        units = tuple(dict.fromkeys(words)) + tuple(dict.fromkeys(latin))
        return _Message(frozenset(words) | bigrams, frozenset(latin), units, tx.compact(norm, normalised=True),
                        tuple(latin), frozenset(negated))

    def _spell(self, word: str) -> str:
        """A Latin word mapped to the entries' closest word when it looks like a typo of it."""
        idx = self._index
        if word in idx.weight or len(word) < 3 or word.isdigit():
            return word
        if word not in self._typos:
            if len(self._typos) > 50_000:  # bounded: typos are a long tail
                self._typos.clear()
            # one letter off in a 4+ letter word; a 3-letter word only gains one ("cod" → code)
            cutoff = 75 if len(word) > 3 else 85
            hit = process.extractOne(word, idx.latin_vocab, scorer=fuzz.ratio, score_cutoff=cutoff)
            self._typos[word] = hit[0] if hit else word
        return self._typos[word]


def _phrases_found(compact: str, phrases: list[tuple[Phrase, _Pattern]], *, near: bool) -> list[_Pattern]:
    """Chinese keywords in the text (or, with `near`, their near forms), not denied ("不用退款"), and not
    inside a longer keyword of another intent that overlaps them ("没收到货" is 没收到, not 到货)."""
    hits: list[tuple[int, int, _Pattern]] = []
    for phrase, pat in phrases:
        found = phrase.find_near(compact) if near else phrase.find(compact)
        if found and not denied_at(compact, found[0]):
            hits.append((*found, pat))
    return [pat for start, end, pat in hits if not any(
        other.intent != pat.intent and end2 - start2 > end - start and start2 < end and start < end2
        for start2, end2, other in hits)]


def _accounts_for(pat: _Pattern, unit: str) -> bool:
    if unit in pat.latin or unit in pat.cjk or (pat.phrase and unit in pat.phrase.text):
        return True
    return len(unit) > 2 and all(unit[i : i + 2] in pat.cjk for i in range(len(unit) - 1))


def _build_index(entries: tuple[FaqEntry, ...]) -> _Index:
    idx = _Index()
    for i, entry in enumerate(entries):
        for example in (*entry.examples_zh, *entry.examples_en):
            idx.patterns.append(_pattern(i, example, keyword=False))
        for keyword in (*entry.keywords_zh, *entry.keywords_en):
            idx.patterns.append(_pattern(i, keyword, keyword=True))
    owners: dict[str, set[int]] = defaultdict(set)
    for p, pat in enumerate(idx.patterns):
        for f in pat.cjk | pat.latin:
            idx.postings[f].append(p)
            owners[f].add(pat.intent)
    idx.phrases = [(pat.phrase, pat) for pat in idx.patterns if pat.phrase]
    for phrase, pat in idx.phrases:
        idx.phrase_starts.setdefault(phrase.text[0], []).append((phrase, pat))
    n = len(entries)
    idx.weight = {f: math.log(1 + n / len(who)) for f, who in owners.items()}
    idx.totals = [sum(idx.weight[f] for f in pat.cjk | pat.latin) for pat in idx.patterns]
    idx.unseen = _UNSEEN_WEIGHT * (sum(idx.weight.values()) / len(idx.weight) if idx.weight else 1.0)
    idx.latin_vocab = sorted(f for f in idx.weight if f.isascii() and f not in (tx.ORDER, tx.CODE))
    return idx


def _pattern(intent: int, source: str, *, keyword: bool) -> _Pattern:
    words, bigrams, latin = tx.features(tx.normalise(source))
    compact = tx.compact(source)
    if keyword and not compact.isascii():
        phrase: Phrase | None = Phrase.of(GAP.join(tx.compact(part) for part in source.split(GAP)))
    else:
        phrase = None
    stems = stem_words(latin)
    sequence = tuple(stems) if keyword and not phrase else ()
    return _Pattern(intent, keyword, frozenset(words) | bigrams, frozenset(stems), phrase, sequence)
