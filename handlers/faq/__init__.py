"""After-sales FAQ: which intent a customer message is (zh_CN / en), from entries merchants can edit."""

from handlers.faq.entries import ACTING_INTENTS, BUILTIN_INTENTS, UNKNOWN, FaqEntry, FaqFileError, MatcherSettings
from handlers.faq.matcher import FaqMatcher, Match
from handlers.faq.text import load_tokenizer, order_refs

__all__ = [
    "ACTING_INTENTS", "BUILTIN_INTENTS", "UNKNOWN", "FaqEntry", "FaqFileError", "FaqMatcher", "Match",
    "MatcherSettings", "load_tokenizer", "order_refs",
]
