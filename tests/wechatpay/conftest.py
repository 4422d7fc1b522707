"""A WeChat Pay test bench: RSA keys made at test time, the fake WeChat Pay server and our app on 127.0.0.1,
a real store (SQLite and PostgreSQL through the shared `store` fixture) with a catalogue priced for WeChat."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bot.composition import Shop, build_shop
from bot.jobs import JobStatus
from bot.server import create_app
from bot.settings import Settings, WeChatPaySettings
from bot.wechatpay import WeChatPay, link_key, load_config, pay_link
from fulfillment.delivery import Delivery
from fulfillment.orders import CheckoutRequest
from storage.records import Order, Price
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.wechatpay_api import FakeWeChatPay
from tests.storage.seed import Shop as Seeded
from tests.storage.seed import make_shop

MCHID = "1900000109"
APP_ID = "wxd678efh567hg6787"
API_V3_KEY = "a" * 16 + "B" * 16
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A72"
PUB_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN")
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@dataclass
class Keys:
    merchant: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def cert_serial(self) -> str:
        return format(self.certificate.serial_number, "X")


def _pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_certificate(key: rsa.RSAPrivateKey, serial: int, not_after: datetime | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=365)).sign(key, hashes.SHA256()))


@pytest.fixture(scope="session")
def keys() -> Keys:
    platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(rsa.generate_private_key(public_exponent=65537, key_size=2048), platform,
                make_certificate(platform, int(secrets.token_hex(16), 16)))


class RecordingChannel:
    def __init__(self) -> None:
        self.sent: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> None:
        self.sent.append(delivery)


@dataclass
class Bench:
    settings: Settings
    shop: Shop
    fake: FakeWeChatPay
    wx: WeChatPay
    seeded: Seeded
    app_url: str
    channel: RecordingChannel
    keys: Keys
    extra: dict[str, object] = field(default_factory=dict)

    async def checkout(self, openid: str = "o-buyer-1", qty: int = 1) -> Order:
        return await self.shop.orders.checkout(CheckoutRequest("wechat", openid, openid, self.seeded.sku.id, qty,
                                                               language="zh_CN"))

    def link(self, order: Order, openid: str = "o-buyer-1") -> str:
        return pay_link(self.settings, order.ref, openid)

    async def get(self, url: str, ua: str = BROWSER_UA) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(url, headers={"User-Agent": ua})

    async def order(self, order: Order) -> Order:
        fresh = await self.shop.store.order_by_id(order.id)
        assert fresh is not None
        return fresh


def write_key_files(tmp_path: Path, keys: Keys, mode: str) -> WeChatPaySettings:
    (tmp_path / "apiclient_key.pem").write_bytes(_pem_private(keys.merchant))
    common = dict(mchid=MCHID, app_id=APP_ID, api_v3_key=API_V3_KEY, merchant_serial_no=MERCHANT_SERIAL,
                  merchant_key_file=tmp_path / "apiclient_key.pem")
    if mode in ("public_key", "both"):  # both: a shop switching from certificates to the public key
        (tmp_path / "pub_key.pem").write_bytes(_pem_public(keys.platform))
        common |= dict(public_key_id=PUB_KEY_ID, public_key_file=tmp_path / "pub_key.pem")
    if mode in ("certificate", "both"):
        (tmp_path / "wechatpay_cert.pem").write_bytes(keys.certificate.public_bytes(serialization.Encoding.PEM))
        common |= dict(platform_cert_files=[tmp_path / "wechatpay_cert.pem"])
    return WeChatPaySettings(**common)


@contextlib.asynccontextmanager
async def bench(store: object, tmp_path: Path, keys: Keys, mode: str = "public_key") -> AsyncIterator[Bench]:
    fake_port, app_port = free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    wxs = write_key_files(tmp_path, keys, mode).model_copy(update={
        "api_base_url": f"http://127.0.0.1:{fake_port}", "notify_url": f"{app_url}/pay/wechat/notify",
        "public_url": app_url})
    assert wxs.enabled
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'unused.db'}", wechatpay=wxs)
    shop = await build_shop(settings, store=store)  # type: ignore[arg-type]
    channel = RecordingChannel()
    shop.channels["wechat"] = channel
    seeded = await make_shop(shop.store, codes=10, vault=shop.vault)
    for sku in (seeded.sku, seeded.big):
        await shop.store.set_price(Price(sku.id, "wechat", "CNY", 1000 * sku.units))
    fake = FakeWeChatPay(MCHID, APP_ID, API_V3_KEY.encode(), keys.merchant.public_key(), MERCHANT_SERIAL,
                         keys.platform, keys.cert_serial if mode == "certificate" else PUB_KEY_ID,
                         notify_url=wxs.notify_url)
    wx = WeChatPay(shop, load_config(wxs), link_key(wxs), reconcile_min_age=timedelta(0))
    app = create_app(shop, JobStatus())
    app.router.routes.extend(wx.routes())
    fake_server = await serve(fake.app(), fake_port)
    app_server = await serve(app, app_port)
    try:
        yield Bench(settings, shop, fake, wx, seeded, app_url, channel, keys)
    finally:
        await wx.aclose()
        await shut(*app_server)
        await shut(*fake_server)


@pytest.fixture
async def env(store: object, tmp_path: Path, keys: Keys) -> AsyncIterator[Bench]:
    async with bench(store, tmp_path, keys) as b:
        yield b
