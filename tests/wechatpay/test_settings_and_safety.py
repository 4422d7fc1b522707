"""Settings from the environment, both key modes at once during a switch, unverifiable responses, and no
secret (APIv3 key, private key, codes) in logs or answers."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from bot.settings import Settings, WeChatPaySettings
from bot.wechatpay import WeChatPay, link_key, load_config
from storage.records import OrderState
from tests.wechatpay.conftest import API_V3_KEY, PUB_KEY_ID, bench, write_key_files


def test_settings_from_environment(monkeypatch, tmp_path, keys):
    files = write_key_files(tmp_path, keys, "public_key")
    env = {"MCHID": "1900000109", "APP_ID": "wxapp", "API_V3_KEY": API_V3_KEY, "MERCHANT_SERIAL_NO": "AB12",
           "MERCHANT_KEY_FILE": str(files.merchant_key_file), "PUBLIC_KEY_ID": PUB_KEY_ID,
           "PUBLIC_KEY_FILE": str(files.public_key_file), "NOTIFY_URL": "https://shop.example/pay/wechat/notify",
           "PUBLIC_URL": "https://shop.example", "LINK_SECRET": "link-secret"}
    for name, value in env.items():
        monkeypatch.setenv(f"KAMIBOT_WECHATPAY__{name}", value)
    settings = Settings(data_dir=tmp_path).wechatpay
    assert settings.enabled
    assert settings.api_base_url == "https://api.mch.weixin.qq.com"
    assert link_key(settings) == b"link-secret"
    assert API_V3_KEY not in repr(settings)
    config = load_config(settings)
    assert API_V3_KEY not in repr(config)
    assert "PRIVATE" not in repr(config)
    assert config.platform_keys.public_keys.keys() == {PUB_KEY_ID}


def test_wechatpay_is_off_until_fully_configured(tmp_path, keys):
    assert not Settings(data_dir=tmp_path).wechatpay.enabled
    partial = write_key_files(tmp_path, keys, "public_key").model_copy(update={"notify_url": "https://x/n"})
    assert not partial.enabled  # no public_url yet


def test_api_v3_key_must_be_32_bytes():
    with pytest.raises(ValidationError):
        WeChatPaySettings(api_v3_key="too-short")


async def test_both_key_modes_are_accepted_during_a_switch(store, tmp_path, keys):
    async with bench(store, tmp_path, keys, mode="both") as env:
        for openid, serial in (("o-1", PUB_KEY_ID), ("o-2", env.keys.cert_serial)):
            order = await env.checkout(openid)
            await env.get(env.link(order, openid))
            tx = env.fake.pay(order.ref)
            response = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx, serial=serial))
            assert response.status_code == 204
            assert (await env.order(order)).state == OrderState.DELIVERING


async def test_response_with_a_bad_signature_is_not_believed(env):
    env.fake.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    order = await env.checkout()
    response = await env.get(env.link(order))
    assert response.status_code == 502
    assert "暂时不可用" in response.text
    assert (await env.order(order)).state == OrderState.RESERVED


async def test_requests_signed_with_another_merchant_key_are_refused_by_wechat_pay(env, store, tmp_path):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = load_config(env.settings.wechatpay)
    object.__setattr__(config, "merchant_key", other)
    wrong = WeChatPay(env.shop, config, link_key(env.settings.wechatpay))
    order = await env.checkout()
    with pytest.raises(Exception, match="SIGN_ERROR"):
        await wrong.client.prepay_native(order, "x")
    await wrong.aclose()
    assert env.fake.rejected == ["signature does not verify"]


async def test_no_secret_in_logs_or_answers(env, caplog):
    caplog.set_level(logging.DEBUG)
    order = await env.checkout()
    await env.get(env.link(order))
    bad = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref),
                                                     timestamp=1))
    assert (await env.fake.notify_paid(order.ref)).status_code == 204
    await env.shop.delivery.drain()
    codes = env.channel.sent[0].codes
    text = caplog.text + bad.text
    assert API_V3_KEY not in text
    assert "PRIVATE KEY" not in text
    assert codes
    assert all(code not in text for code in codes)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("kamibot"))
    assert "o-buyer-1" not in ours  # no openid either: payers are logged by order id only
    assert env.link(order).split("sig=")[1] not in ours


async def test_build_registers_the_provider_for_the_delivery_worker(env):
    built = WeChatPay.build(env.shop)
    try:
        assert env.shop.providers["wechatpay"] is built.provider
        assert env.shop.delivery.providers["wechatpay"] is built.provider
        assert {route.path for route in built.routes()} == {"/pay/wechat/notify", "/pay/wechat/{order_ref}"}
    finally:
        await built.aclose()
