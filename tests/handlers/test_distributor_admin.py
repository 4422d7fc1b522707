"""Merchant distributor commands through the real conversation router on a shop of each backend: what a merchant
sees, what is stored and audited, and that strangers and bad input change nothing (audit log included)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.composition import build_context, build_shop
from fulfillment.aftersales import AfterSalesService
from fulfillment.distributors import CommissionPass
from fulfillment.orders import CheckoutRequest
from handlers.router import Conversation
from handlers.types import Incoming
from tests.fulfillment.conftest import settings_for
from tests.storage.seed import make_shop

MERCHANT = "m1"


class Chat:
    async def deliver(self, delivery) -> None:
        return None


@pytest.fixture
async def chat(store, tmp_path):
    shop = await build_shop(settings_for(tmp_path), store=store)
    shop.channels["console"] = Chat()
    seeded = await make_shop(shop.store, codes=10, unit_cost=50, vault=shop.vault)
    ctx = build_context(shop, {"console": {MERCHANT}})
    conv = Conversation(ctx, flood_control=False)

    async def say(text: str, user: str = MERCHANT, language: str = "en"):
        return await conv.handle(Incoming("console", user, user, text=text, language=language))

    yield shop, seeded, say
    if shop.risk is not None:
        await shop.risk.close()


async def _state(shop):
    """Everything a distributor command could change."""
    dists = await shop.store.distributors()
    clients = await shop.store.api_clients()
    return (dists, [(d.id, await shop.store.distributor_prices(d.id), await shop.store.commission_rates(d.id),
                     await shop.store.commission_balances(d.id)) for d in dists],
            clients, [await shop.store.wallet_lines(c.id, 100) for c in clients],
            await shop.store.audit_entries(100))


async def test_a_merchant_runs_a_distributor_from_chat(chat):
    shop, seeded, say = chat
    added = await say("/distributor acme add")
    assert "Distributor acme added" in added[0].text
    assert "ref_acme" in added[0].text
    created = await say("/apikey create shopb catalog:read,orders:write")
    secret = next(w for w in created[0].text.split() if w.startswith("ks_"))
    assert (await say("/apikey list"))[0].text.startswith("shopb kk_")
    assert "now buys as API client shopb" in (await say("/distributor acme link shopb"))[0].text
    assert (await say("/wallet acme +5000 prepaid by bank"))[0].text == \
        "Wallet of acme: +CN¥50.00, balance CN¥50.00."
    assert (await say("/distributor acme discount 1500"))[0].text == \
        "acme: discount 1500 bp off the API price (never below cost)."
    assert "acme pays" in (await say(f"/distributor acme price {seeded.sku.slug} 700"))[0].text
    assert "commission 1000 bp" in (await say("/distributor acme commission 1000"))[0].text
    await say(f"/distributor acme commission 300 {seeded.big.slug}")
    await say(f"/distributor acme price {seeded.big.slug} 10 CNY override")
    shown = (await say("/distributor acme show"))[0].text
    assert "API client: shopb" in shown
    assert f"price {seeded.sku.slug}" in shown
    assert f"commission {seeded.big.slug}: 300 bp" in shown
    assert f"price {seeded.big.slug}: CN¥0.10 (below cost: the merchant's override)" in shown
    # a customer follows acme's link and buys: the commission is acme's, payable, paid out, on the statement
    await say("/start ref_acme", user="c1")
    order = await shop.orders.checkout(CheckoutRequest("console", "c1", "c1", seeded.sku.id, 1))
    await shop.payments.receive(shop.providers["test"].pay(order))
    await shop.delivery.drain()
    assert await CommissionPass(shop.store).run_once() == 1
    paid = await say("/distributor acme payout 40 cash")
    assert paid[0].text == "Payout of CN¥0.40 to acme recorded. Payable now: CN¥0.60."
    assert "acme: API, discount 1500 bp, commission 1000 bp" in (await say("/distributors"))[0].text
    period = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    st = (await say(f"/distributor acme statement {period}"))[0]
    assert st.text.splitlines()[:2] == [
        f"Statement of acme for {period} (orders with commission: 1).",
        "CNY: opening CN¥0.00 + accrued CN¥1.00 − reversed CN¥0.00 − paid out CN¥0.40 = closing CN¥0.60"]
    assert st.document is not None
    assert st.document.filename == f"statement-acme-{period}.csv"
    rows = list(csv.reader(io.StringIO(st.document.content.decode())))
    assert [(r[0], r[2], r[6] or r[8]) for r in rows[1:]] == [
        ("balance", "opening", "0"), ("commission", "accrual", "100"), ("commission", "payout", "-40"),
        ("balance", "closing", "60"), ("sales", "revenue", "1000"), ("sales", "refunds", "0"),
        ("sales", "commission", "-100"), ("wallet", "topup", "5000")]
    assert "Sales brought in (CNY): 1 orders, revenue CN¥10.00, refunds CN¥0.00, commission CN¥1.00" in st.text
    audit = [(a[3], a[4]) for a in await shop.store.audit_entries(50)]
    actions = [a for a, _ in audit]
    for action in ("distributor.add", "apikey.create", "distributor.link", "distributor.wallet",
                   "distributor.discount", "distributor.price", "distributor.commission", "distributor.payout"):
        assert action in actions
    assert all(secret not in detail for _, detail in audit)  # the secret is shown once, never stored in clear
    key_id = next(w for w in created[0].text.split() if w.startswith("kk_"))
    assert (await say(f"/apikey revoke {key_id}"))[0].text == f"Key {key_id} revoked."
    assert (await say(f"/apikey revoke {key_id}"))[0].text == f"Key {key_id} was revoked already."


async def test_bad_input_and_strangers_change_nothing(chat):
    shop, seeded, say = chat
    await say("/distributor acme add")
    await say("/apikey create shopb orders:write")
    await say("/distributor acme link shopb")
    await say("/wallet acme +1000 start")
    before = await _state(shop)
    refusals = {
        "/distributor nobody discount 100": "No distributor named nobody.",
        "/distributor acme discount 10001": "Basis points are a whole number from 0 to 10000 (100 = 1%).",
        "/distributor acme commission -5": "Basis points are a whole number from 0 to 10000 (100 = 1%).",
        "/distributor acme payout 1 x": "Nothing is payable to acme in CNY (payable 0 minor units; clawback carried"
                                        " 0: commission of refunded orders that was paid out already). The clawback"
                                        " is offset against future commission; payouts are accepted again once the"
                                        " payable is above 0.",
        "/distributor acme payout 1.5 x": "The amount must be a whole number of minor units (fen), e.g. 5000; for "
                                          "the wallet with a sign: +5000 or -5000.",
        f"/distributor acme price {seeded.sku.slug} 10": "That is below the cost of game-1 (50 in CNY minor units)."
                                                         " Add override at the end to sell below cost anyway.",
        "/distributor acme price game-1 500 cny": "A currency is three capital letters, e.g. CNY.",
        "/distributor acme statement 2026-13": "The period is a month as YYYY-MM, e.g. 2026-11.",
        "/distributor acme add": "A distributor named acme exists already (or that API client belongs to another one).",
        "/distributor bad!name add": "A distributor name is 1-32 letters, digits, _ or -.",
        "/distributor beta add nosuchclient": "No API client nosuchclient.",
        "/wallet acme 500 no sign": "The amount must be a whole number of minor units (fen), e.g. 5000; for the "
                                    "wallet with a sign: +5000 or -5000.",
        "/wallet acme -50": "Taking money out of a wallet needs a note saying why.",
        "/wallet acme -5000 too much": "The wallet of acme holds less than that.",
        "/wallet acme +5 currency=cny": "A currency is three capital letters, e.g. CNY.",
        "/wallet ghost +5 x": "No distributor named ghost.",
        "/apikey create shopb orders:write": "Name: letters, digits, _ . - (at most 64), not used yet; scopes: one "
                                             "or more of catalog:read,orders:write,orders:read (comma-separated).",
        "/apikey create other admin:all": "Name: letters, digits, _ . - (at most 64), not used yet; scopes: one or "
                                          "more of catalog:read,orders:write,orders:read (comma-separated).",
        "/apikey revoke kk_nothing": "No API client kk_nothing.",
    }
    for text, answer in refusals.items():
        assert (await say(text))[0].text == answer, text
    assert (await say("/distributor acme frobnicate"))[0].text.startswith("Distributor commands:")
    assert (await say("/distributor nobody discount 100", language="zh_CN"))[0].text == "没有名为 nobody 的分销商。"
    for text in ("/distributors", "/distributor acme add", "/distributor evil add", "/wallet acme +100000 mine",
                 "/apikey create mine orders:write", "/apikey list", "/distributor acme payout 1 x"):
        replies = await say(text, user="stranger")
        assert replies[0].text == "Unknown command. Send /start for the menu.", text
    assert await _state(shop) == before


async def test_a_merchant_sees_a_clawback_refused_payouts_and_the_carried_balance(chat):
    shop, seeded, say = chat
    await say("/distributor acme add")
    await say("/distributor acme commission 1000")
    await say("/start ref_acme", user="c1")
    order = await shop.orders.checkout(CheckoutRequest("console", "c1", "c1", seeded.sku.id, 2))
    await shop.payments.receive(shop.providers["test"].pay(order))
    await shop.delivery.drain()
    await CommissionPass(shop.store).run_once()
    assert "Payable now: CN¥0.00" in (await say("/distributor acme payout 200 bank"))[0].text
    # the order is refunded after acme was paid: 200 is clawed back
    await AfterSalesService(shop.store).request_refund(order.ref, MERCHANT)
    await shop.delivery.drain()
    assert (await say("/distributor acme payout 50 more"))[0].text.startswith(
        "Nothing is payable to acme in CNY (payable -200 minor units; clawback carried 200:")
    period = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    st = (await say(f"/distributor acme statement {period}"))[0]
    assert ("CNY clawback: carried at the start CN¥0.00, taken back this period CN¥2.00 (refunds of commission"
            " already paid out), carried at the end CN¥2.00: offset against future commission, no payout until it"
            " is.") in st.text.splitlines()
    assert "closing -CN¥2.00" in st.text
    rows = list(csv.reader(io.StringIO(st.document.content.decode())))
    assert [(r[2], r[10], r[11]) for r in rows[1:] if r[0] == "commission"] == [
        ("accrual", "0", "0"), ("payout", "0", "0"), ("reversal", "200", "200")]
