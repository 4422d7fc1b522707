"""`kamibot api-keys …` as a real process: the secret is printed once and stored only sealed, wallets move with
a ledger line each, revoked keys stay listed as revoked, and every change is audited."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from tests.bot.test_cli import kamibot


def test_api_keys_create_wallet_list_revoke(tmp_path: Path) -> None:
    created = kamibot(tmp_path, "api-keys", "create", "shop-b", "--scopes", "catalog:read,orders:write")
    assert created.returncode == 0, created.stderr.decode()
    out = created.stdout.decode()
    key_id = re.search(r"key id:\s+(kk_\w+)", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(ks_\S+)", out).group(1)  # type: ignore[union-attr]
    assert secret not in created.stderr.decode()  # never logged
    topped = kamibot(tmp_path, "api-keys", "wallet", "shop-b", "+5000", "--note", "first")
    assert "CNY\t5000" in topped.stdout.decode()
    refused = kamibot(tmp_path, "api-keys", "wallet", "shop-b", "-6000")
    assert refused.returncode == 2
    listed = kamibot(tmp_path, "api-keys", "list").stdout.decode()
    assert f"shop-b\t{key_id}\tcatalog:read,orders:write\tlive\tCNY=5000" in listed
    assert kamibot(tmp_path, "api-keys", "revoke", key_id).stdout.decode().strip() == "revoked"
    assert "\trevoked " in kamibot(tmp_path, "api-keys", "list").stdout.decode()
    assert kamibot(tmp_path, "api-keys", "price", "shop-b", "missing-sku", "500").returncode == 2
    for args in (("catalog", "product", "gems", "--category", "games", "--name-en", "Gems", "--name-zh", "钻石",
                  "--pool", "gems"),
                 ("catalog", "sku", "gems-1", "--product", "gems", "--pool", "gems", "--name-en", "1",
                  "--name-zh", "1")):
        assert kamibot(tmp_path, *args).returncode == 0
    priced = kamibot(tmp_path, "api-keys", "price", "shop-b", "gems-1", "500")
    assert priced.stdout.decode().strip() == "shop-b gems-1: CNY 500"
    bad = kamibot(tmp_path, "api-keys", "create", "x", "--scopes", "orders:delete")
    assert bad.returncode == 2
    db = sqlite3.connect(tmp_path / "kamibot.db")
    try:
        stored = b"".join(bytes(r[0]) for r in db.execute("SELECT secret_ct FROM api_clients"))
        audited = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    finally:
        db.close()
    assert secret.encode() not in stored
    assert audited == ["api_key.create", "api_wallet.adjust", "api_key.revoke", "api_price.set"]
