"""The order-API store verbs (storage/protocols/api.py) on both backends: clients, wallets and their ledger, the
one-transaction wallet-paid order (all or nothing), Idempotency-Key claims with lease takeover."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.errors import InsufficientStock, UnknownRecord
from storage.protocol import Store
from storage.protocols.api import (
    ApiOrderIn,
    DuplicateOrderNo,
    IdemState,
    InsufficientBalance,
    NameTaken,
    NonceUsed,
    Sealed,
)
from storage.records import OnceKey, OrderState, Price
from tests.storage.seed import NOW, make_shop

SECRET = Sealed("k1", b"n" * 12, b"ciphertext")


async def _client(store: Store, funds: int = 5_000) -> int:
    client = await store.create_api_client("kk_1", "one", ("orders:write",), SECRET, NOW)
    if funds:
        await store.adjust_wallet(client.id, "CNY", funds, "topup", "seed", NOW)
    return client.id


def _order(cid: int, sku_id: int, no: str = "A-1", qty: int = 1, amount: int = 1_000) -> ApiOrderIn:
    return ApiOrderIn(cid, no, "hash-" + no + str(qty), "", sku_id, qty, amount, "CNY", NOW + timedelta(minutes=5))


async def test_clients_are_created_listed_and_revoked_once(store: Store) -> None:
    client = await store.create_api_client("kk_1", "one", ("catalog:read", "orders:read"), SECRET, NOW)
    assert client.scopes == ("catalog:read", "orders:read")
    assert client.secret == SECRET
    with pytest.raises(NameTaken):
        await store.create_api_client("kk_2", "one", ("catalog:read",), SECRET, NOW)
    assert [c.key_id for c in await store.api_clients()] == ["kk_1"]
    assert await store.revoke_api_client("kk_1", NOW) is True
    assert await store.revoke_api_client("kk_1", NOW) is False
    again = await store.api_client("kk_1")
    assert again is not None
    assert again.revoked_at == NOW


async def test_wallet_moves_never_below_zero_and_each_is_a_ledger_line(store: Store) -> None:
    cid = await _client(store, funds=0)
    await store.adjust_wallet(cid, "CNY", 300, "topup", "a", NOW)
    with pytest.raises(InsufficientBalance):
        await store.adjust_wallet(cid, "CNY", -301, "topup", "b", NOW)
    with pytest.raises(InsufficientBalance):
        await store.adjust_wallet(cid, "USD", -1, "topup", "c", NOW)
    line = await store.adjust_wallet(cid, "CNY", -300, "topup", "d", NOW)
    assert line is not None
    assert line.balance_after == 0
    assert await store.wallet_balances(cid) == {"CNY": 0}
    assert [ln.amount for ln in await store.wallet_lines(cid, 10)] == [-300, 300]


async def test_wallet_paid_order_allocates_and_debits_in_one_transaction(store: Store) -> None:
    shop = await make_shop(store, codes=3)
    cid = await _client(store)
    placed = await store.place_api_order(_order(cid, shop.sku.id, qty=2, amount=2_000), NOW)
    assert placed.fresh is True
    order = await store.order_by_id(placed.order_id)
    assert order is not None
    assert (order.state, order.channel) == (OrderState.DELIVERING, "api")
    assert len(await store.order_items(order.id)) == 2
    assert await store.wallet_balances(cid) == {"CNY": 3_000}
    link = await store.api_order(cid, "A-1")
    assert link is not None
    assert link.order_id == order.id
    assert await store.api_order_of(order.id) == link
    # the same number and body again: the first order, nothing debited
    again = await store.place_api_order(_order(cid, shop.sku.id, qty=2, amount=2_000), NOW)
    assert (again.order_id, again.fresh) == (order.id, False)
    assert await store.wallet_balances(cid) == {"CNY": 3_000}
    with pytest.raises(DuplicateOrderNo):
        await store.place_api_order(_order(cid, shop.sku.id, qty=1), NOW)


@pytest.mark.parametrize(("qty", "amount", "error"), [(1, 6_000, InsufficientBalance), (4, 1_000, InsufficientStock)])
async def test_a_refused_order_changes_nothing(store: Store, qty: int, amount: int, error: type[Exception]) -> None:
    shop = await make_shop(store, codes=3)
    cid = await _client(store)
    with pytest.raises(error):
        await store.place_api_order(_order(cid, shop.sku.id, qty=qty, amount=amount), NOW)
    assert await store.pool_available(shop.pool.id) == 3
    assert await store.wallet_balances(cid) == {"CNY": 5_000}
    assert len(await store.wallet_lines(cid, 10)) == 1
    assert await store.orders_for_user("api", f"client:{cid}", 10, 0) == []
    assert await store.api_order(cid, "A-1") is None


async def test_unknown_sku_is_refused(store: Store) -> None:
    cid = await _client(store)
    with pytest.raises(UnknownRecord):
        await store.place_api_order(_order(cid, 999), NOW)


async def test_a_refund_line_per_order_is_written_once(store: Store) -> None:
    shop = await make_shop(store, codes=3)
    await store.set_price(Price(shop.sku.id, "api", "CNY", 1_000))
    cid = await _client(store)
    placed = await store.place_api_order(_order(cid, shop.sku.id), NOW)
    first = await store.adjust_wallet(cid, "CNY", 1_000, "refund", "r", NOW, order_id=placed.order_id)
    second = await store.adjust_wallet(cid, "CNY", 1_000, "refund", "r", NOW, order_id=placed.order_id)
    assert first is not None
    assert second is None
    assert await store.wallet_balances(cid) == {"CNY": 5_000}


async def test_idempotency_claims(store: Store) -> None:
    cid = await _client(store)
    lease = NOW + timedelta(seconds=30)
    assert (await store.claim_idempotency(cid, "k", "h1", lease, NOW)).state == IdemState.NEW
    assert (await store.claim_idempotency(cid, "k", "h1", lease, NOW)).state == IdemState.PENDING
    assert (await store.claim_idempotency(cid, "k", "h2", lease, NOW)).state == IdemState.MISMATCH
    # the holder died: after its lease the next caller takes the key over
    later = NOW + timedelta(seconds=31)
    assert (await store.claim_idempotency(cid, "k", "h1", later + timedelta(seconds=30), later)).state == \
        IdemState.NEW
    done = await store.finish_idempotency(cid, "k", 201, Sealed("k1", b"x" * 12, b"body"))
    assert (done.state, done.status, done.body) == (IdemState.DONE, 201, Sealed("k1", b"x" * 12, b"body"))
    # a second finisher does not overwrite the first answer
    other = await store.finish_idempotency(cid, "k", 201, Sealed("k1", b"y" * 12, b"other"))
    assert other.body == Sealed("k1", b"x" * 12, b"body")
    assert (await store.claim_idempotency(cid, "k", "h1", lease, NOW)).body == other.body
    # a released key runs again
    assert (await store.claim_idempotency(cid, "k2", "h1", lease, NOW)).state == IdemState.NEW
    await store.release_idempotency(cid, "k2")
    assert (await store.claim_idempotency(cid, "k2", "h1", lease, NOW)).state == IdemState.NEW


async def test_the_order_claims_its_nonce_in_its_transaction(store: Store) -> None:
    shop = await make_shop(store, codes=3)
    cid = await _client(store)
    nonce = OnceKey("api.nonce", "kk_1:n1", NOW + timedelta(minutes=10))
    # a refused order leaves the nonce free
    with pytest.raises(InsufficientBalance):
        await store.place_api_order(_order(cid, shop.sku.id, amount=9_000), NOW, nonce)
    assert not await store.once_claimed("api.nonce", "kk_1:n1", NOW)
    await store.place_api_order(_order(cid, shop.sku.id), NOW, nonce)
    assert await store.once_claimed("api.nonce", "kk_1:n1", NOW)
    with pytest.raises(NonceUsed):
        await store.place_api_order(_order(cid, shop.sku.id, no="A-2"), NOW, nonce)
    assert await store.api_order(cid, "A-2") is None
