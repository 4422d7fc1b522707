"""`kamibot reconcile …` as a real process on a fresh SQLite shop: a supplier statement reconciled (JSON outcome),
listed and resolved; a bad statement, a day not over and an unconfigured source are errors that record nothing."""

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
    bad = tmp_path / "bad.csv"
    bad.write_text("our_ref,cost,currency,state\nX,9.90,CNY,succeeded\n")

    refused = kamibot(tmp_path, "reconcile", "supplier", "kw", "--date", yesterday, "--statement", str(bad))
    assert refused.returncode == 2
    assert "supplier_order_id" in refused.stderr.decode()
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


def test_bad_requests_are_errors(tmp_path):
    future = kamibot(tmp_path, "reconcile", "telegram", "--date", "2099-01-01")
    assert future.returncode == 2
    assert "no such source" in future.stderr.decode()  # no bot token here: Telegram is not a source
    assert kamibot(tmp_path, "reconcile", "resolve", "7", "x").returncode == 2
