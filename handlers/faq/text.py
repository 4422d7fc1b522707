"""Customer text → comparable features: normalisation, order refs, jieba words, CJK bigrams, Latin words."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import warnings
from typing import Any

# Order numbers as storage.sqlite_orders.new_ref() makes them: "K" + 11 of 23456789ABCDEFGHJKLMNPQRSTUVWXYZ.
# Customers type them in lower case too; the test suite checks this against new_ref() itself.
_REF = re.compile(r"(?<![0-9A-Za-z])[Kk][2-9A-HJ-NP-Za-hj-np-z]{11}(?![0-9A-Za-z])")
# A code pasted into the text: groups joined by dashes (ABCD-EFGH-JKLM) or a long run mixing letters and digits.
_CODE = re.compile(
    r"(?<![0-9a-z])(?:[0-9a-z]{3,}(?:-[0-9a-z]{3,}){2,}|(?=[a-z]*\d)(?=\d*[a-z])[0-9a-z]{10,})(?![0-9a-z])"
)
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_TOKEN = re.compile(r"[\u3400-\u9fff]+|[a-z0-9]+(?:'[a-z]+)?|\{order\}|\{code\}")

ORDER = "{order}"  # placeholder an example may contain where customers put an order number
CODE = "{code}"  # placeholder for a gift card / key pasted into the message

# The longest text looked at: a customer question fits; a pasted 10 KB log must not cost 10 KB of jieba.
MAX_CHARS = 400

# Traditional characters met in this trade's messages (HK/TW customers), mapped to simplified before matching.
_TRAD = str.maketrans(
    "買賣沒號碼無顯輸換發貨錢單訂開謝請問為裡嗎麼價員說時還過們這個來會兌儲專經啟動額幫點"
    "幣讓給對錯誤線紀錄帳戶張卡區語務實際從啊機稱頁貼處標寫聯繫麵聽應該種邊現體難變與鐘幾",
    "买卖没号码无显输换发货钱单订开谢请问为里吗么价员说时还过们这个来会兑储专经启动额帮点"
    "币让给对错误线纪录帐户张卡区语务实际从啊机称页贴处标写联系面听应该种边现体难变与钟几",
)

# Words the stock dictionary splits badly ("卡密用" is one jieba word otherwise); added once per process.
_DOMAIN_WORDS = (
    "卡密", "兑换码", "激活码", "充值码", "礼品卡", "点卡", "序列号", "用不了", "没收到", "未收到", "没发货",
    "退款", "退钱", "发票", "开票", "转人工", "人工客服", "补货", "有货", "缺货", "支付宝", "微信支付", "已使用",
    "已被使用", "无效", "锁区", "到账", "订单号", "单号",
)

_STOP_ZH = frozenset((
    "的", "了", "吗", "呢", "啊", "吧", "呀", "么", "嘛", "哦", "哈", "我", "你", "您", "他", "她", "它",
    "们", "是", "这", "那", "个", "一", "下", "就", "都", "也", "和", "跟", "请", "请问", "麻烦", "老板", "亲",
))
_STOP_EN = frozenset((
    "i", "me", "my", "mine", "the", "a", "an", "is", "am", "are", "was", "were", "be", "been", "it", "its", "to",
    "of", "and", "or", "u", "you", "your", "ur", "pls", "plz", "please", "this", "that", "for", "on", "in", "at",
    "with", "so", "just", "yet", "now", "im", "i'm", "bro", "sir",
))


@functools.cache
def _jieba() -> Any:
    """One jieba tokenizer per process (its dictionary is ~60 MB; loading takes about a second)."""
    # jieba 0.42 imports pkg_resources (deprecated by setuptools) and has invalid "\s" escapes that warn when
    # its .py files are compiled; both are jieba's own, not ours, and must not fail a run with -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import jieba  # type: ignore[import-untyped]  # no stubs; used through the small surface below
    jieba.setLogLevel(logging.WARNING)  # it logs "Building prefix dict…" at DEBUG to stderr otherwise
    # jieba caches its parsed dictionary as a marshal file; a private per-user directory under the temp dir
    # keeps it out of the working directory and away from files planted by other users in a shared /tmp.
    cache = _cache_dir()
    tok = jieba.Tokenizer(_common_words(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), cache))
    tok.tmp_dir = cache
    tok.initialize()
    for word in _DOMAIN_WORDS:
        tok.add_word(word)
    return tok


# jieba's full dictionary (349k words) costs ~70 MB in every bot process. Its 244k words seen fewer than 10 times
# in jieba's corpus barely change a customer question's features: on tests/faq/eval_set.tsv top-1 accuracy is
# 0.928 with the 105k common words against 0.930 with all, for ~33 MB (jieba ships a dict.txt.small for this).
_MIN_WORD_FREQ = 10


def _common_words(source: str, cache: str) -> str:
    """jieba's dictionary without its rare words, written once into the private cache directory."""
    target = os.path.join(cache, f"dict.freq{_MIN_WORD_FREQ}.txt")
    if not os.path.exists(target):
        with open(source, encoding="utf-8") as fh:
            kept = [line for line in fh if len(parts := line.split()) >= 2 and int(parts[1]) >= _MIN_WORD_FREQ]
        partial = f"{target}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="utf-8") as out:
            out.writelines(kept)
        os.replace(partial, target)  # atomic: a process starting beside this one reads all of it or builds its own
    return target


def _cache_dir() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"kamibot-jieba-{uid}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
        return path
    # someone else made (or links) that name: load from a fresh private directory, removed at exit
    fresh = tempfile.mkdtemp(prefix="kamibot-jieba-")
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh


def load_tokenizer() -> None:
    """Load jieba now (startup) instead of on the first message."""
    _jieba()


def order_refs(text: str) -> tuple[str, ...]:
    """Order numbers found anywhere in the text, upper-cased, first occurrence order, no duplicates."""
    return tuple(dict.fromkeys(m.group(0).upper() for m in _REF.finditer(text)))


def normalise(text: str) -> str:
    """Width, case and traditional forms folded; order refs and codes replaced by placeholders."""
    text = unicodedata.normalize("NFKC", text[: MAX_CHARS * 2]).lower().translate(_TRAD)
    text = _REF.sub(f" {ORDER} ", text)
    text = _CODE.sub(f" {CODE} ", text)
    return text[:MAX_CHARS]


def compact(text: str, *, normalised: bool = False) -> str:
    """Normalised text without spaces or punctuation: what Chinese keywords are searched in."""
    return "".join(_TOKEN.findall(text if normalised else normalise(text)))


def features(normalised: str) -> tuple[list[str], set[str], list[str]]:
    """(CJK words and placeholders, CJK bigrams, Latin words) of normalised text, stop words removed."""
    words: list[str] = []
    bigrams: set[str] = set()
    latin: list[str] = []
    for piece in _TOKEN.findall(normalised):
        if piece in (ORDER, CODE):
            words.append(piece)
        elif _CJK_RUN.fullmatch(piece):
            words.extend(w for w in _jieba().lcut(piece, HMM=False) if w not in _STOP_ZH)
            bigrams.update(piece[i : i + 2] for i in range(len(piece) - 1))
        elif piece not in _STOP_EN:
            latin.append(piece)
    return words, bigrams, latin
