"""`kamibot faq classify`, run as a real process (`python -m bot`): one JSON line per text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kamibot(cwd: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "KAMIBOT_DATA_DIR": str(cwd), "PYTHONPATH": str(ROOT)}
    env.pop("KAMIBOT_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, env=env, cwd=cwd,
                          timeout=60, check=False)


def test_classify_one_text_prints_one_json_line(tmp_path):
    result = kamibot(tmp_path, "faq", "classify", "付了钱 没收到卡密")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1
    answer = json.loads(lines[0])
    assert set(answer) == {"intent", "confidence"}
    assert answer["intent"] == "not_received"
    assert 0 < answer["confidence"] <= 1
    assert not (tmp_path / "kamibot.db").exists(), "classifying needs no database"


def test_classify_file_gives_one_line_per_text_in_order(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("how do i redeem the steam key\n\n能开发票吗\n讲个笑话\n", encoding="utf-8")
    result = kamibot(tmp_path, "faq", "classify", "--file", str(texts))
    assert result.returncode == 0, result.stderr.decode()
    intents = [json.loads(line)["intent"] for line in result.stdout.decode().splitlines()]
    assert intents == ["how_to_redeem", "unknown", "invoice", "unknown"]
    piped = kamibot(tmp_path, "faq", "classify", "--file", "-", stdin="退款\n".encode())
    assert json.loads(piped.stdout)["intent"] == "refund"


def test_classify_with_a_merchant_file_and_a_bad_one(tmp_path):
    good = tmp_path / "faq.toml"
    good.write_text('[[intent]]\nid = "hours"\nexamples_zh = ["几点发货"]\nanswer_zh = "全天发货"\n', encoding="utf-8")
    result = kamibot(tmp_path, "faq", "classify", "--intents", str(good), "你们几点发货")
    assert json.loads(result.stdout)["intent"] == "hours"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[intent]]\nid = "hours"\nanswer_zh = "全天"\n', encoding="utf-8")
    refused = kamibot(tmp_path, "faq", "classify", "--intents", str(bad), "你们几点发货")
    assert refused.returncode == 2
    assert b"'hours': has no examples" in refused.stderr
    assert refused.stdout == b""


def test_classify_needs_exactly_one_source(tmp_path):
    result = kamibot(tmp_path, "faq", "classify")
    assert result.returncode == 2
    assert b"either TEXT or --file" in result.stderr
