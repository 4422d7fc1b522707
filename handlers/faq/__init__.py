"""After-sales FAQ: which intent a customer message is (zh_CN / en), from entries merchants can edit.

    matcher = FaqMatcher.default()                  # built-in intents (intents.toml); load once at startup
    match = matcher.classify("付了钱没收到卡密 K7Q2M9XHA3BC")
    match.intent, match.confidence, match.order_refs  # ("not_received", 0.78, ("K7Q2M9XHA3BC",))
    matcher = matcher.with_entries(FaqEntry("hours", examples_zh=("几点发货",), answer_zh="全天自动发货"))
    Path("faq.toml").write_text(matcher.dump_toml())  # FaqMatcher.from_toml(path) reads it back

`match.intent` is "unknown" below the threshold or in a near tie: ask or hand over. An acting intent
(code_invalid, not_received, refund) is only returned with a clear lead and a message about the shop.
"""

from handlers.faq.entries import ACTING_INTENTS, BUILTIN_INTENTS, UNKNOWN, FaqEntry, FaqFileError, MatcherSettings
from handlers.faq.matcher import FaqMatcher, Match
from handlers.faq.text import load_tokenizer, order_refs

__all__ = [
    "ACTING_INTENTS", "BUILTIN_INTENTS", "UNKNOWN", "FaqEntry", "FaqFileError", "FaqMatcher", "Match",
    "MatcherSettings", "load_tokenizer", "order_refs",
]
