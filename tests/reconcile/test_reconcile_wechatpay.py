"""WeChat Pay reconciliation over the fake's ALL trade bill (gzip, SHA1, backtick fields, yuan, refunds, fees):
planted mismatches are found, exactly those; fees become the bill's actual 手续费 once; a bad bill changes nothing."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta

import pytest

from fulfillment.reconcile import Kind, ReconcileError
from fulfillment.reconcile_wechatpay import BEIJING
from storage import events
from storage.records import PaymentEventIn
from tests.wechatpay.conftest import WECHAT_UA

K = Kind


def today_bj():
    return (datetime.now().astimezone() + BEIJING - datetime.now().astimezone().utcoffset()).date()


async def _paid(env, openid: str):
    """A JSAPI order paid through the fake's notification; (order, its transaction)."""
    order = await env.checkout(openid)
    assert (await env.get(env.link(order, openid), ua=WECHAT_UA)).status_code == 200
    assert (await env.fake.notify_paid(order.ref + "-J", openid)).status_code == 204
    return order, env.fake.transactions[order.ref + "-J"]


async def _ledger(env):
    now = datetime.now().astimezone()
    return sorted((line.kind, line.currency, line.amount, line.orders)
                  for line in await env.shop.store.ledger(now - timedelta(days=3), now + timedelta(days=3)))


def _fees(lines) -> int:
    return sum(amount for kind, _, amount, _ in lines if kind == "fee")


async def test_planted_mismatches_are_found_exactly_and_fees_corrected_once(env):
    recon = env.extra["recon"]
    clean = [await _paid(env, f"o-clean-{i}") for i in range(3)]
    # a refund both sides know: WeChat Pay refunded it and the shop booked it
    both, both_tx = await _paid(env, "o-both")
    await env.wx.client.refund(both, both_tx["transaction_id"], both.amount)
    assert await env.shop.store.refund(both.id, events.refunded(reason="merchant"), datetime.now().astimezone())
    # planted: an amount that differs, a refund on WeChat Pay's side only, a refund on the shop's side only
    changed, changed_tx = await _paid(env, "o-changed")
    changed_tx["amount"]["total"] = 990
    theirs, theirs_tx = await _paid(env, "o-theirs")
    await env.wx.client.refund(theirs, theirs_tx["transaction_id"], theirs.amount)
    ours, ours_tx = await _paid(env, "o-ours")
    assert await env.shop.store.refund(ours.id, events.refunded(reason="merchant"), datetime.now().astimezone())
    # planted: money WeChat Pay took for a trade the shop never heard of, and a payment only the shop recorded
    stranger = env.fake.pay("STRANGER0001-N", "o-x", amount=500)
    lonely = await env.checkout("o-lonely")
    await env.shop.store.receive_payment(PaymentEventIn("wechatpay", "4200009999", lonely.ref, lonely.amount, "CNY"),
                                         datetime.now().astimezone())
    before = await _ledger(env)

    outcome = await recon.run("wechatpay", today_bj(), "console", "m1")

    found = {(d.kind, d.reference) for d in outcome.new}
    assert found == {(K.AMOUNT_MISMATCH, changed_tx["transaction_id"]),
                     (K.REFUND_MISMATCH, theirs_tx["transaction_id"]),
                     (K.REFUND_MISMATCH, ours_tx["transaction_id"]),
                     (K.MISSING_IN_SHOP, stranger["transaction_id"]),
                     (K.MISSING_AT_PROVIDER, "4200009999")}
    by_kind = {(d.kind, d.reference): d for d in outcome.new}
    assert (by_kind[(K.AMOUNT_MISMATCH, changed_tx["transaction_id"])].expected,
            by_kind[(K.AMOUNT_MISMATCH, changed_tx["transaction_id"])].actual) == (1000, 990)
    assert by_kind[(K.REFUND_MISMATCH, theirs_tx["transaction_id"])].actual == 1000
    assert by_kind[(K.MISSING_IN_SHOP, stranger["transaction_id"])].order_ref == "STRANGER0001"
    # the bill's 8 payment rows and 2 refund rows; 7 payments of the shop's orders get their actual fee (0.6%)
    assert outcome.checked == 10
    paid_here = [o for o, _ in clean] + [both, changed, theirs, ours]
    assert outcome.fees_corrected == len(paid_here)
    after = await _ledger(env)
    assert _fees(before) == 0  # no estimate was booked: every fee comes from the bill
    assert _fees(after) == -(6 * env.fake.fee(1000) + env.fake.fee(990))
    assert [line for line in after if line[0] != "fee"] == [line for line in before if line[0] != "fee"]
    # a second run: nothing new, no ledger change
    again = await recon.run("wechatpay", today_bj(), "console", "m1")
    assert (again.found, again.new, again.fees_corrected) == (5, (), 0)
    assert await _ledger(env) == after
    audit = [e for e in await env.shop.store.audit_entries(10) if e[3] == "reconcile"]
    assert len(audit) == 2


BAD_BILLS = {
    "SHA1 hash": ("rewrite", lambda raw: gzip.compress(gzip.decompress(raw).replace(b"`10.00", b"`11.00"))),
    "truncated": ("rewrite", lambda raw: raw[: len(raw) // 2]),
    "unknown column": ("edit", lambda text: text.replace("费率备注", "备注二", 1)),
    "currency 'USD'": ("edit", lambda text: text.replace("`CNY", "`USD", 1)),
    "dated '2099-01-01": ("edit", lambda text: text.replace(f"`{today_bj()} 12:00:00", "`2099-01-01 12:00:00", 1)),
    "no summary": ("edit", lambda text: text[: text.index("总交易单数")]),
}


async def test_a_bad_bill_is_refused_with_a_reason_and_changes_nothing(env):
    recon = env.extra["recon"]
    await _paid(env, "o-1")
    before = await _ledger(env)
    for case, (where, change) in BAD_BILLS.items():
        env.fake.bill_rewrite = env.fake.bill_edit = None
        setattr(env.fake, "bill_rewrite" if where == "rewrite" else "bill_edit", change)
        with pytest.raises(ReconcileError) as refused:
            await recon.run("wechatpay", today_bj(), "console", "m1")
        assert refused.value.message_id == "reconcile.bad_bill", case
        assert case in str(refused.value)  # the reason, for the merchant and the log
        assert await _ledger(env) == before, case
        assert await env.shop.store.discrepancies(True, 10) == [], case
    env.fake.bill_rewrite = env.fake.bill_edit = None
    assert (await recon.run("wechatpay", today_bj(), "console", "m1")).fees_corrected == 1  # the good bill


async def test_future_and_empty_days(env):
    recon = env.extra["recon"]
    with pytest.raises(ReconcileError) as refused:
        await recon.run("wechatpay", today_bj() + timedelta(days=1), "console", "m1")
    assert refused.value.message_id == "reconcile.future_date"
    empty = await recon.run("wechatpay", today_bj() - timedelta(days=3), "console", "m1")
    assert (empty.checked, empty.found, empty.fees_corrected) == (0, 0, 0)
    assert await env.shop.store.discrepancies(True, 10) == []
