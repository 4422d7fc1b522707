"""GET /pay/wechat/{order}: signed expiring links only; JSAPI inside WeChat, Native QR outside; one prepay."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from bot.wechatpay import pay_link
from fulfillment.wechatpay_crypto import rsa_verify
from storage.records import OrderState
from tests.wechatpay.conftest import APP_ID, WECHAT_UA

PARAMS = re.compile(r"var params=(\{.*?\});")


def _prepays(env) -> int:
    return sum(1 for method, path in env.fake.calls if path.startswith("/v3/pay/transactions/")
               and path.rsplit("/", 1)[-1] in ("jsapi", "native"))


async def test_native_page_outside_wechat_shows_svg_qr_and_awaits_payment(env):
    order = await env.checkout()
    response = await env.get(env.link(order))
    assert response.status_code == 200
    assert "<svg" in response.text
    assert "<path" in response.text
    assert "请使用微信扫描二维码支付" in response.text  # the order's language (zh_CN) through the translator
    assert order.ref in response.text
    assert "¥10.00" in response.text
    assert response.headers["cache-control"] == "no-store"
    tx = env.fake.transactions[order.ref]
    assert tx["trade_type"] == "NATIVE"
    assert tx["amount"]["total"] == 1000
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT
    assert env.fake.rejected == []  # every request we made carried a valid merchant signature


async def test_jsapi_page_inside_wechat_carries_a_valid_pay_sign(env):
    order = await env.checkout("o-buyer-1")
    response = await env.get(env.link(order, "o-buyer-1"), ua=WECHAT_UA)
    assert response.status_code == 200
    assert "getBrandWCPayRequest" in response.text
    params = json.loads(PARAMS.search(response.text).group(1))
    tx = env.fake.transactions[order.ref]
    assert tx["trade_type"] == "JSAPI"
    assert tx["payer"] == {"openid": "o-buyer-1"}
    assert params["appId"] == APP_ID
    assert params["package"] == "prepay_id=" + tx["prepay_id"]
    assert params["signType"] == "RSA"
    assert params["timeStamp"].isdigit()
    assert params["nonceStr"]
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    assert rsa_verify(env.keys.merchant.public_key(), message, params["paySign"])


async def test_reloading_the_page_reuses_the_prepay(env):
    order = await env.checkout()
    link = env.link(order)
    first = await env.get(link, ua=WECHAT_UA)
    second = await env.get(link, ua=WECHAT_UA)
    third = await env.get(link)
    fourth = await env.get(link)
    assert [r.status_code for r in (first, second, third, fourth)] == [200] * 4
    assert PARAMS.search(first.text).group(1).count("prepay_id=") == 1
    assert json.loads(PARAMS.search(first.text).group(1))["package"] == \
        json.loads(PARAMS.search(second.text).group(1))["package"]
    assert _prepays(env) == 2  # one JSAPI, one Native, however often the page is loaded


async def test_forged_link_is_403_and_creates_nothing(env):
    order = await env.checkout()
    link = env.link(order)
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = [
        link.replace("sig=" + query["sig"], "sig=" + query["sig"][:-2] + "AA"),
        link.replace("openid=o-buyer-1", "openid=o-attacker"),
        link.replace("exp=" + query["exp"], "exp=" + str(int(query["exp"]) + 3600)),
        link.replace(order.ref, "K" + "0" * 11),
        f"{env.app_url}/pay/wechat/{order.ref}",
    ]
    for url in forged:
        response = await env.get(url)
        assert response.status_code == 403, url
        assert "支付链接无效或已过期" in response.text or "invalid" in response.text
    assert _prepays(env) == 0


async def test_expired_link_is_403(env):
    order = await env.checkout()
    old = pay_link(env.settings, order.ref, "o-buyer-1", now=datetime.now(UTC) - timedelta(hours=1))
    response = await env.get(old)
    assert response.status_code == 403
    assert _prepays(env) == 0


async def test_expired_order_gets_a_clear_not_payable_page(env):
    order = await env.checkout()
    env.shop.orders.clock = lambda: order.expires_at + timedelta(seconds=1)
    await env.shop.orders.expire_due()
    response = await env.get(env.link(order))
    assert response.status_code == 409
    assert "已无法支付" in response.text
    assert _prepays(env) == 0


async def test_paid_order_page_says_already_paid(env):
    order = await env.checkout()
    await env.get(env.link(order))
    assert (await env.fake.notify_paid(order.ref)).status_code == 204
    response = await env.get(env.link(order))
    assert response.status_code == 200
    assert "此订单已支付" in response.text
    assert _prepays(env) == 1


async def test_invoice_link_without_openid_pays_as_the_wechat_order_owner(env):
    from bot.wechatpay import invoice_pay_link
    from handlers.types import Invoice

    order = await env.checkout("o-owner")
    link = invoice_pay_link(env.settings)(Invoice(order.ref, "100 gems", "", order.amount, order.currency))
    assert "openid=" not in link
    response = await env.get(link, ua=WECHAT_UA)
    assert response.status_code == 200
    assert "getBrandWCPayRequest" in response.text
    assert env.fake.transactions[order.ref]["payer"] == {"openid": "o-owner"}
    tampered = link.replace("?", "?openid=o-attacker&")
    assert (await env.get(tampered, ua=WECHAT_UA)).status_code == 403


async def test_risk_checks_the_buyer_address_and_believes_forwarded_for_only_from_trusted_proxies(env):
    from risk.netaddr import parse_networks

    await env.shop.risk.set_list("ip", "198.51.100.0/24", "block", "test")
    order = await env.checkout()
    spoofed = await _get_with(env, env.link(order), {"X-Forwarded-For": "198.51.100.9"})
    assert spoofed.status_code == 200  # a header from a client we do not trust changes nothing
    other = await env.checkout(openid="o-buyer-2")
    env.wx.trusted_proxies = parse_networks(["127.0.0.1/32"])  # now we sit behind our own proxy on 127.0.0.1
    refused = await _get_with(env, env.link(other, "o-buyer-2"), {"X-Forwarded-For": "198.51.100.9"})
    assert refused.status_code == 403
    assert "暂时无法接受此订单" in refused.text  # polite, localised, no rule or threshold
    assert "blocklist" not in refused.text
    assert other.ref not in env.fake.transactions  # no prepay for a refused buyer
    await env.shop.risk.decisions.flush()
    logged = await env.shop.store.risk_decisions("ip", "198.51.100.9", 5)
    assert [(d.stage, d.decision, d.reasons) for d in logged] == [("payment", "deny", "blocklist:ip")]


async def _get_with(env, url: str, headers: dict[str, str]):
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, headers={"User-Agent": "Mozilla/5.0", **headers})
