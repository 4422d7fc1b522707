"""`kamibot reconcile …` as a real process on a fresh SQLite shop: a supplier statement reconciled (JSON outcome),
listed and resolved; an unconfigured source is an error (bad statements and dates: tests/reconcile)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.bot.test_cli import kamibot


def test_reconcile_a_supplier_statement_list_and_resolve(tmp_path):
    added = kamibot(tmp_path, "suppliers", "add", "kw", "--protocol", "kashangwl", "--url", "http://127.0.0.1:9",
                    "--account", "10939", stdin=b"a-supplier-key\n")
    assert added.returncode == 0, added.stderr.decode()
    yesterday = (datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)).date().isoformat()
    statement = tmp_path / "kw.csv"
    statement.write_text("our_ref,supplier_order_id,cost,currency,state\nX-THEIRS,K9,9.90,CNY,succeeded\n")
    run = kamibot(tmp_path, "reconcile", "supplier", "kw", "--date", yesterday, "--statement", str(statement),
                  "--json")
    assert run.returncode == 0, run.stderr.decode()
    outcome = json.loads(run.stdout)
    assert [(d["kind"], d["reference"], d["actual"]) for d in outcome["new"]] == [("extra_at_supplier", "X-THEIRS",
                                                                                   990)]
    did = outcome["new"][0]["id"]
    resolved = kamibot(tmp_path, "reconcile", "resolve", str(did), "not", "ours:", "asked", "the", "supplier")
    assert resolved.returncode == 0, resolved.stderr.decode()
    listed = kamibot(tmp_path, "reconcile", "list", "--all").stdout.decode()
    assert f"#{did} {yesterday} supplier:kw extra_at_supplier X-THEIRS" in listed
    assert "not ours: asked the supplier" in listed

    unknown = kamibot(tmp_path, "reconcile", "telegram", "--date", yesterday)
    assert unknown.returncode == 2
    assert "no such source" in unknown.stderr.decode()  # no bot token here: Telegram is not a source
