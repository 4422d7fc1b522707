"""The `kamibot` command line, run as a real process (`python -m bot`) on a fresh data directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def kamibot(data: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "KAMIBOT_DATA_DIR": str(data), "KAMIBOT_DEFAULT_LANGUAGE": "en", "PYTHONPATH": str(ROOT)}
    env.pop("KAMIBOT_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, env=env,
                          cwd=data, timeout=60, check=False)


def test_scripted_demo_sells_a_code_and_remembers_it_next_run(tmp_path):
    first = kamibot(tmp_path, "demo", stdin=b"1\n1\n1\n1\n1\n1\n1\n")
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    codes = re.findall(r"^\s{4}(GI60-\S+)$", out, re.MULTILINE)
    assert len(codes) == 1
    assert (tmp_path / "kamibot.db").exists()
    assert oct((tmp_path / "vault.key").stat().st_mode & 0o777) == "0o600"
    again = kamibot(tmp_path, "demo", stdin=b"2\n1\n")  # My orders → codes again
    assert codes[0] in again.stdout.decode()
    stock = kamibot(tmp_path, "codes", "stock")
    assert "pool genshin-60: available 29, reserved 0" in stock.stdout.decode()


def test_demo_merchant_mode_runs_admin_commands(tmp_path):
    result = kamibot(tmp_path, "demo", "--merchant", stdin=b"/stock\n")
    assert "pool genshin-60: 30 / 0" in result.stdout.decode()


def test_import_from_file_and_stdin_with_summary(tmp_path):
    kamibot(tmp_path, "demo", stdin=b"")  # seeds the catalogue
    f = tmp_path / "codes.csv"
    f.write_text("code,uses\nC-1,1\nC-2,2\nC-1,1\nbad,x\n")
    result = kamibot(tmp_path, "codes", "import", "genshin-60", str(f), "--json", "--cost", "400")
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert (summary["imported"], summary["duplicate_in_file"], summary["invalid_lines"][0]["line"]) == (2, 1, 5)
    piped = kamibot(tmp_path, "codes", "import", "genshin-60", "-", "--json", stdin=b"C-2\nD-1\n\n")
    assert json.loads(piped.stdout)["imported"] == 1
    assert json.loads(piped.stdout)["duplicate_in_vault"] == 1


@pytest.mark.parametrize(("content", "message"), [
    ("卡密".encode("gbk"), b"not UTF-8"),
    (b"serial\nX\n", b"'code' column"),
])
def test_bad_import_files_fail_clearly_and_import_nothing(tmp_path, content, message):
    kamibot(tmp_path, "demo", stdin=b"")
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    result = kamibot(tmp_path, "codes", "import", "genshin-60", str(f))
    assert result.returncode == 2
    assert message in result.stderr
    assert "available 30" in kamibot(tmp_path, "codes", "stock").stdout.decode()


def test_catalog_load_refuses_a_file_with_a_typo(tmp_path):
    shop = tmp_path / "shop.toml"
    shop.write_text('[[category]]\nslug = "x"\nname_en = "X"\nname_zh = "X"\nsortt = 1\n')
    result = kamibot(tmp_path, "catalog", "load", str(shop))
    assert result.returncode == 2
    assert b"category.0.sortt" in result.stderr


def test_catalog_product_sku_price_and_list(tmp_path):
    assert kamibot(tmp_path, "catalog", "product", "steam", "--category", "cards", "--name-en", "Steam",
                   "--name-zh", "Steam 卡", "--pool", "steam-50").returncode == 0
    assert kamibot(tmp_path, "catalog", "sku", "steam-50", "--product", "steam", "--pool", "steam-50",
                   "--name-en", "50", "--name-zh", "50").returncode == 0
    assert kamibot(tmp_path, "catalog", "price", "steam-50", "wechat", "3500").returncode == 0
    bad = kamibot(tmp_path, "catalog", "price", "steam-50", "wechat", "35.00")
    assert bad.returncode == 2
    listing = kamibot(tmp_path, "catalog", "list").stdout.decode()
    assert "steam-50 (#1) units 1 qty 1-10 limit -: wechat CN¥35.00" in listing


def test_db_upgrade_and_key_rotation(tmp_path):
    from storage.migrations import migrations

    latest = migrations("sqlite")[-1][0]
    assert kamibot(tmp_path, "db", "upgrade").stdout.decode().strip() == f"schema version {latest}"
    kamibot(tmp_path, "demo", stdin=b"")
    rotated = kamibot(tmp_path, "keys", "rotate")
    assert rotated.stdout.decode().strip() == "active key k2; 34 codes re-encrypted"
    sold = kamibot(tmp_path, "demo", stdin=b"1\n1\n1\n1\n1\n1\n1\n")
    assert re.search(r"^\s{4}GI60-\S+$", sold.stdout.decode(), re.MULTILINE)


def test_missing_key_file_of_existing_vault_stops_the_start(tmp_path):
    kamibot(tmp_path, "demo", stdin=b"")
    (tmp_path / "vault.key").unlink()
    result = kamibot(tmp_path, "codes", "stock")
    assert result.returncode == 2
    assert b"missing" in result.stderr
    assert not (tmp_path / "vault.key").exists()


def test_risk_rules_are_loaded_from_a_file_and_a_typo_changes_nothing(tmp_path):
    from risk.rules import default_rules_text

    shown = kamibot(tmp_path, "risk", "rules")
    assert shown.returncode == 0, shown.stderr.decode()
    assert "users_per_ip_day: distinct per user/ip / 1d > 10 -> deny" in shown.stdout.decode()
    good = tmp_path / "rules.toml"
    good.write_text(default_rules_text().replace("threshold = 10\nkind = \"distinct\"", "threshold = 4\nkind = "
                                                 "\"distinct\""), encoding="utf-8")
    from risk.rules import parse_rules

    count = len(parse_rules(good.read_text(encoding="utf-8")).rules)
    assert kamibot(tmp_path, "risk", "load", str(good)).stdout.decode().strip() == f"{count} risk rules in force"
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.x]\nkind = \"velocity\"\nthreshold = -1\n", encoding="utf-8")
    refused = kamibot(tmp_path, "risk", "load", str(bad))
    assert refused.returncode == 2
    assert "rules.x.threshold" in refused.stderr.decode()
    after = kamibot(tmp_path, "risk", "rules").stdout.decode()
    assert "users_per_ip_day: distinct per user/ip / 1d > 4 -> deny" in after  # the last good rules stay


def test_catalog_sku_is_held_to_the_same_bounds_as_chat(tmp_path):
    assert kamibot(tmp_path, "catalog", "product", "steam", "--category", "cards", "--name-en", "Steam",
                   "--name-zh", "Steam 卡", "--pool", "steam-50").returncode == 0
    bad = kamibot(tmp_path, "catalog", "sku", "steam-50", "--product", "steam", "--pool", "steam-50",
                  "--name-en", "50", "--name-zh", "50", "--max", "5000")
    assert bad.returncode == 2
    assert "max_qty: Input should be less than or equal to 1000" in bad.stderr.decode()
    assert "steam-50" not in kamibot(tmp_path, "catalog", "list").stdout.decode()
