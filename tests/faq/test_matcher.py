"""FaqMatcher: accuracy on the labelled evaluation set, never a wrong action, order refs, edits, bad files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from rapidfuzz import fuzz, process

from handlers.faq import ACTING_INTENTS, BUILTIN_INTENTS, UNKNOWN, FaqEntry, FaqFileError, FaqMatcher, order_refs
from storage.sqlite_orders import new_ref
from tests.faq.conftest import eval_rows

ROOT = Path(__file__).resolve().parents[2]
_CJK = re.compile(r"[\u3400-\u9fff]")


def test_eval_set_is_large_mostly_chinese_and_uses_known_labels():
    rows = eval_rows()
    labels = Counter(label for label, _ in rows)
    assert len(rows) >= 400
    assert sum(1 for _, text in rows if _CJK.search(text)) * 2 >= len(rows)
    assert set(labels) == {*BUILTIN_INTENTS, UNKNOWN}, "every built-in intent and off-topic chat are covered"
    assert len({text for _, text in rows}) == len(rows), "no message twice"


def test_eval_messages_are_not_copied_from_the_examples(matcher):
    examples = [x.lower() for e in matcher.entries for x in (*e.examples_zh, *e.examples_en)]
    texts = [text.lower() for _, text in eval_rows()]
    copied = [(text, hit[0]) for text in texts
              if (hit := process.extractOne(text, examples, scorer=fuzz.ratio, score_cutoff=95)) is not None]
    assert copied == []


def test_accuracy_on_eval_set_and_no_message_sent_to_a_wrong_action(matcher):
    rows = eval_rows()
    predicted = [(label, matcher.classify(text).intent, text) for label, text in rows]
    correct = sum(1 for label, got, _ in predicted if label == got)
    accuracy = correct / len(rows)
    confusion = Counter((label, got) for label, got, _ in predicted if label != got)
    wrong_actions = [(label, got, text) for label, got, text in predicted if got != label and got in ACTING_INTENTS]
    builtin = [(label, got) for label, got, _ in predicted if label != UNKNOWN]
    builtin_accuracy = sum(1 for label, got in builtin if label == got) / len(builtin)
    report = (f"FAQ eval: top-1 accuracy {accuracy:.3f} ({correct}/{len(rows)}), {builtin_accuracy:.3f} on the "
              f"{len(builtin)} messages of a built-in intent; confusion (true → predicted): "
              + ", ".join(f"{t}→{p} ×{n}" for (t, p), n in confusion.most_common()))
    print("\n" + report)
    for label, got, text in predicted:
        if label != got:
            print(f"  {label:>14} → {got:<14} {text}")
    assert accuracy >= 0.92, report
    assert builtin_accuracy >= 0.92, report
    assert wrong_actions == [], f"{report}; sent to a wrong action: {wrong_actions}"


def test_order_refs_in_the_real_format_are_extracted_wherever_they_are():
    refs = [new_ref() for _ in range(200)]
    for ref in refs:
        assert order_refs(f"订单{ref}没收到") == (ref,)
        assert order_refs(f"order {ref.lower()}, pls check") == (ref,)
    text = f"{refs[0]} 和 {refs[1]} 都没到，还有{refs[0]}"
    assert order_refs(text) == (refs[0], refs[1])


@pytest.mark.parametrize("text", [
    "KVP2RJ2777T2X",  # one character too many
    "KVP2RJ2777T",  # one too few
    "KVP2RJ2O77T2",  # O is not in the alphabet (nor 0, 1, I)
    "AKVP2RJ2777T2",  # inside a longer word
    "steam code KVP2-RJ27-77T2",
])
def test_strings_that_are_not_order_refs_are_not_extracted(text):
    assert order_refs(text) == ()


def test_classify_reports_refs_with_the_intent(matcher):
    ref = new_ref()
    match = matcher.classify(f"付了钱没收到卡密 订单号{ref}")
    assert (match.intent, match.order_refs) == ("not_received", (ref,))
    assert matcher.classify(ref).intent == "order_status"


@pytest.mark.parametrize(("text", "intent"), [
    ("买的 steam 卡 code 用不了 invalid", "code_invalid"),
    ("付款了 but 还没收到 code", "not_received"),
    ("能不能 refund 啊", "refund"),
    ("how do i 兑换", "how_to_redeem"),
    ("ＣＯＤＥ ＮＯＴ ＷＯＲＫＩＮＧ", "code_invalid"),  # full-width, as some Chinese keyboards type it
    ("買了沒收到碼", "not_received"),  # traditional characters
    ("i didnt recieve my cod", "not_received"),  # typos
])
def test_mixed_language_width_script_and_typos(matcher, text, intent):
    assert matcher.classify(text).intent == intent


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "？？？", "😀😀", "12345"])
def test_empty_or_meaningless_input_is_unknown(matcher, text):
    match = matcher.classify(text)
    assert (match.intent, match.order_refs) == (UNKNOWN, ())
    assert 0 <= match.confidence < matcher.settings.threshold


def test_huge_input_classifies_quickly_and_still_finds_the_order_ref(matcher):
    ref = new_ref()
    text = ("我的码用不了 " + "啊" * 5000 + " lorem ipsum " * 400)[:10_000] + ref
    assert len(text.encode()) > 10_000
    started = time.perf_counter()
    match = matcher.classify(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05
    assert match.order_refs == (ref,)
    assert 0 <= match.confidence <= 1


@pytest.mark.parametrize("text", [
    "不用退款 给我换一个能兑换的码",
    "i dont want a refund, the code just doesnt work",
])
def test_a_denied_refund_is_not_a_refund(matcher, text):
    assert matcher.classify(text).intent != "refund"


def test_an_action_needs_the_message_to_be_about_the_shop(matcher):
    assert matcher.classify("这个月工资还没发").intent == UNKNOWN
    assert matcher.classify(f"还没发 {new_ref()}").intent == "not_received"


def test_a_chinese_keyword_with_one_character_more_or_less_is_found():
    hours = FaqEntry("hours", examples_zh=("几点开门",), keywords_zh=("营业时间",), answer_zh="9-21")
    post = FaqEntry("post", examples_zh=("发什么快递",), keywords_zh=("快递公司",), answer_zh="顺丰")
    matcher = FaqMatcher([hours, post])
    assert matcher.classify("你们营业的时间").intent == "hours"  # one put in
    assert matcher.classify("营时间是多少").intent == "hours"  # one dropped
    assert matcher.classify("营业的具体时间").intent == UNKNOWN  # two put in: not the keyword any more


def test_a_keyword_with_a_gap_spans_a_few_characters_only(matcher):
    assert matcher.classify("付款的时候一直失败").intent == "payment_help"  # 付款*失败
    assert matcher.classify("付款的时候我那个网络很差然后失败").intent == UNKNOWN


def test_politeness_around_a_question_does_not_hide_it(matcher):
    assert matcher.classify("你好 我付了款没收到卡密 谢谢").intent == "not_received"
    assert matcher.classify("thanks").intent == "thanks"


def test_merchant_entry_added_at_run_time_is_matched_and_the_old_matcher_is_unchanged(matcher):
    entry = FaqEntry("delivery_hours", examples_zh=("几点发货", "晚上也发货吗", "周末发货吗"),
                     examples_en=("do you deliver at night", "what are your opening hours"),
                     keywords_zh=("营业时间",), keywords_en=("opening hours",),
                     answer_zh="24 小时自动发货", answer_en="Codes are delivered 24/7")
    edited = matcher.with_entries(entry)
    match = edited.classify("你们营业时间是几点到几点")
    assert match.intent == "delivery_hours"
    assert edited.entry("delivery_hours").answer("en") == "Codes are delivered 24/7"
    assert edited.classify("opening hours?").intent == "delivery_hours"
    assert matcher.classify("你们营业时间是几点到几点").intent != "delivery_hours"
    assert edited.without("delivery_hours").entry("delivery_hours") is None


def test_edited_examples_replace_the_entry_with_the_same_id(matcher):
    refund = matcher.entry("refund")
    narrowed = FaqEntry("refund", examples_en=("money back",), answer_en="")
    edited = matcher.with_entries(narrowed)
    assert edited.entry("refund") == narrowed != refund
    assert [e.id for e in edited.entries] == [e.id for e in matcher.entries]


def test_dump_toml_reads_back_to_the_same_entries(matcher):
    entry = FaqEntry("shipping", examples_zh=('带"引号"的\\问题',), answer_zh="第一行\n第二行",
                     answer_en="tab\there \x7f")
    edited = matcher.with_entries(entry)
    again = FaqMatcher.from_toml(edited.dump_toml())
    assert again.entries == edited.entries
    assert again.settings == edited.settings


def test_toml_with_a_syntax_error_is_refused_with_its_line():
    with pytest.raises(FaqFileError, match=r"not valid TOML.*line 4"):
        FaqMatcher.from_toml('[[intent]]\nid = "hours"\nexamples_zh = ["几点发货"\nanswer_zh = "全天"\n')


def test_toml_with_a_misspelt_key_is_refused_naming_it():
    with pytest.raises(FaqFileError, match=r"'hours'.*unknown key\(s\) \['exampels_zh'\]"):
        FaqMatcher.from_toml('[[intent]]\nid = "hours"\nexampels_zh = ["几点发货"]\nanswer_zh = "全天"\n')


def test_entry_without_examples_is_refused_naming_it():
    with pytest.raises(FaqFileError, match=r"'hours': has no examples"):
        FaqMatcher.from_toml('[[intent]]\nid = "hours"\nkeywords_zh = ["几点"]\nanswer_zh = "全天"\n')


@pytest.mark.parametrize(("toml", "message"), [
    ('[[intent]]\nid = "hours"\nexamples_zh = ["几点发货"]\n', r"'hours': a merchant entry needs answer"),
    ('[[intent]]\nid = "a"\nexamples_en = ["x"]\nanswer_en = "y"\n[[intent]]\nid = "a"\nexamples_en = ["z"]\n'
     'answer_en = "y"\n', r"'a' is defined twice"),
    ('[[intent]]\nid = "Hours!"\nexamples_en = ["x"]\nanswer_en = "y"\n', r"id must be lower-case"),
    ('[[intent]]\nid = "a"\nexamples_en = "x"\nanswer_en = "y"\n', r"examples_en must be a list"),
    ('[matcher]\nthreshold = 2\n[[intent]]\nid = "a"\nexamples_en = ["x"]\nanswer_en = "y"\n', r"threshold must"),
    ('[intents]\nid = "a"\n', r"unknown section"),
    ('[matcher]\nthreshold = 0.5\n', r"no \[\[intent\]\] entries"),
])
def test_other_bad_files_are_refused_clearly(toml, message):
    with pytest.raises(FaqFileError, match=message):
        FaqMatcher.from_toml(toml)


def test_from_toml_reads_a_file_path(tmp_path):
    path = tmp_path / "faq.toml"
    path.write_text('[[intent]]\nid = "hours"\nexamples_zh = ["几点发货"]\nanswer_zh = "全天"\n', encoding="utf-8")
    assert FaqMatcher.from_toml(path).classify("你们几点发货啊").intent == "hours"
    with pytest.raises(FaqFileError, match="cannot read"):
        FaqMatcher.from_toml(tmp_path / "missing.toml")


def test_loading_jieba_is_silent_and_caches_only_in_the_temp_dir(tmp_path):
    work, temp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "HOME": str(work), "PYTHONPATH": str(ROOT)}
    code = "from handlers.faq import FaqMatcher; print(FaqMatcher.default().classify('你好').intent)"
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=work, env=env, capture_output=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"greeting\n", b"")
    assert list(work.iterdir()) == []
    written = sorted(p.relative_to(temp).as_posix() for p in temp.rglob("*") if p.is_file())
    # the dictionary of common words and jieba's parsed cache of it (named after the dictionary's path)
    assert [w.split("/")[0] for w in written] == [f"kamibot-jieba-{os.getuid()}"] * 2
    assert written[0].endswith("/dict.freq10.txt")
    assert written[1].startswith(f"kamibot-jieba-{os.getuid()}/jieba.u")
    assert written[1].endswith(".cache")


def test_a_cache_directory_others_can_write_is_not_used(tmp_path, monkeypatch):
    from handlers.faq.text import _cache_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"kamibot-jieba-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    used = Path(_cache_dir())
    assert used != shared
    assert used.parent == tmp_path
    assert used.stat().st_mode & 0o077 == 0
    shared.chmod(0o700)
    assert Path(_cache_dir()) == shared
