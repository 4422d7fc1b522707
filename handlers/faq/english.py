"""English as customers type it: slang spelled out, words lightly stemmed, negations recognised."""

from __future__ import annotations

from collections.abc import Iterable

# Chat spellings mapped to the word they stand for (before stemming and typo matching).
_SLANG = {
    "hw": "how", "wat": "what", "wats": "what", "whats": "what", "wot": "what", "pls": "please",
    "plz": "please", "thx": "thanks", "thnx": "thanks", "tks": "thanks", "ty": "thanks", "tysm": "thanks",
    "recd": "received", "rcvd": "received", "pmt": "payment", "acct": "account", "msg": "message",
    "2": "to", "4": "for", "dont": "don't", "didnt": "didn't", "doesnt": "doesn't", "cant": "can't",
    "wont": "won't", "isnt": "isn't", "havent": "haven't", "hasnt": "hasn't", "aint": "ain't",
    "cannot": "can't", "sth": "something", "smth": "something", "nth": "nothing", "nada": "nothing",
}
# Words after which the next word is denied ("no refund", "don't want a refund"); Chinese ones precede a
# keyword in the compact text ("不用退款").
NEGATORS = frozenset({
    "no", "not", "don't", "never", "without", "nor",
    "不用", "不要", "不想", "不需要", "不必", "无需", "别", "没要", "不是",
})


def stem(word: str) -> str:
    """received/receive → receiv, redeemed/redeeming → redeem, codes → code, working → work."""
    word = _SLANG.get(word, word)
    if "'" in word:
        return word
    for suffix, keep in (("ing", 4), ("ed", 4), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep - 1 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def stem_words(words: Iterable[str]) -> list[str]:
    return [stem(w) for w in words]
