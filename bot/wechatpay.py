"""WeChat Pay in the HTTP app: signed pay links, the pay page (JSAPI inside WeChat, Native QR outside), notify.

`GET /pay/wechat/{order_ref}?openid=…&exp=…&sig=…` — the link is an HMAC over ref, openid and expiry made by
`pay_link` (the chat side sends it), so the page needs no OAuth round trip to learn the payer's openid.
`POST /pay/wechat/notify` — WeChat Pay notifications (fulfillment/wechatpay_notify.py does the checks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import qrcode  # type: ignore[import-untyped]  # no stubs published
import qrcode.image.svg  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bot.composition import Shop
from bot.settings import Settings, WeChatPaySettings
from bot.wechatpay_notices import Send, ShopNotices
from fulfillment.errors import RiskChallenge, RiskDenied, ShopError
from fulfillment.orders import HOLDING, KEPT_THE_MONEY
from fulfillment.wechatpay import WeChatPayClient, WeChatPayConfig, WeChatPayError, WeChatPayProvider, out_trade_no
from fulfillment.wechatpay_crypto import PlatformKeys, jsapi_pay_sign, load_private_key, nonce_str
from fulfillment.wechatpay_extra import AfterPayment, PaymentNotices
from fulfillment.wechatpay_notify import NotifyRejected, WeChatPayNotifications
from fulfillment.wechatpay_reconcile import WatchList, WeChatPayReconciler
from handlers.types import Invoice
from locales import Translator, normalise_language
from risk.engine import Signals
from risk.netaddr import client_ip, parse_networks
from storage.records import Order, OrderState

log = logging.getLogger("kamibot.wechatpay")
MAX_NOTIFY_BODY = 64 * 1024
PREPAY_KEEP = timedelta(hours=2) - timedelta(minutes=5)  # a prepay_id lives two hours
WECHAT_CHANNEL = "wechat"  # orders from the Official Account carry the buyer's openid as user id
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def link_key(settings: WeChatPaySettings) -> bytes:
    """KAMIBOT_WECHATPAY__LINK_SECRET, or a one-way derivation of the APIv3 key (changing it voids old links)."""
    secret = settings.link_secret.get_secret_value()
    if secret:
        return secret.encode()
    return hmac.new(settings.api_v3_key.get_secret_value().encode(), b"kamibot.wechatpay.link.v1",
                    hashlib.sha256).digest()


def link_signature(key: bytes, order_ref: str, openid: str, exp: int) -> str:
    mac = hmac.new(key, f"wxpay-link\n{order_ref}\n{openid}\n{exp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def pay_link(settings: Settings, order_ref: str, openid: str = "", *, now: datetime | None = None) -> str:
    """The signed, expiring pay-page link for an order and its buyer's openid (send it in the chat).

    Without an openid the page uses the order's own user id when the order came from the WeChat channel
    (there the user id is the openid); the signature binds whichever openid the link carries."""
    cfg = settings.wechatpay
    exp = int((now or datetime.now(UTC)).timestamp()) + cfg.link_ttl_seconds
    sig = link_signature(link_key(cfg), order_ref, openid, exp)
    who = f"openid={quote(openid, safe='')}&" if openid else ""
    return f"{cfg.public_url.rstrip('/')}/pay/wechat/{quote(order_ref, safe='')}?{who}exp={exp}&sig={sig}"


def invoice_pay_link(settings: Settings) -> Callable[[Invoice], str]:
    """The seam handlers/wechat/render.py asks for: an invoice (order) → its signed pay-page link."""
    return lambda invoice: pay_link(settings, invoice.order_ref)


def link_valid(key: bytes, order_ref: str, openid: str, exp: str, sig: str, now: datetime) -> bool:
    if not exp.isdigit() or int(exp) < now.timestamp():
        return False
    return hmac.compare_digest(link_signature(key, order_ref, openid, int(exp)).encode(), sig.encode())


def load_config(settings: WeChatPaySettings) -> WeChatPayConfig:
    assert settings.merchant_key_file is not None
    keys = PlatformKeys.load(settings.public_key_id, settings.public_key_file, settings.platform_cert_files)
    return WeChatPayConfig(
        mchid=settings.mchid, app_id=settings.app_id, api_v3_key=settings.api_v3_key.get_secret_value().encode(),
        merchant_serial_no=settings.merchant_serial_no,
        merchant_key=load_private_key(settings.merchant_key_file.read_bytes()), platform_keys=keys,
        notify_url=settings.notify_url, base_url=settings.api_base_url)


def qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    svg = image.to_string(encoding="unicode")
    return svg if isinstance(svg, str) else svg.decode()


def script_json(value: object) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class WeChatPay:
    """The WeChat Pay runtime of one process: client, provider (registered on the shop), routes and job."""

    def __init__(self, shop: Shop, config: WeChatPayConfig, key: bytes, *, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 reconcile_min_age: timedelta = timedelta(minutes=1), notices: PaymentNotices | None = None) -> None:
        self.shop = shop
        self.config = config
        self.key = key
        self.clock = clock
        self.t = Translator(shop.settings.default_language)
        self.client = WeChatPayClient(config, http, clock)
        self.after = AfterPayment(shop.store, self.client, WeChatPayProvider.name, notices or ShopNotices(shop), clock)
        self.provider = WeChatPayProvider(self.client, self.after.own_payment, shop.store.refunded_parts)
        self.notifications = WeChatPayNotifications(shop.store, shop.payments, config,
                                                    shop.vault.fingerprint, clock,
                                                    on_failed_payment=self._failed_payment,
                                                    after_payment=self.after.settle)
        self.watch = WatchList(shop.store, clock)
        self.reconciler = WeChatPayReconciler(shop.store, self.client, self.notifications,
                                              min_age=reconcile_min_age, clock=clock)
        shop.providers[self.provider.name] = self.provider
        self.trusted_proxies = parse_networks(shop.settings.risk.trusted_proxies)

    @classmethod
    def build(cls, shop: Shop, senders: dict[str, Send] | None = None) -> WeChatPay:
        """`senders`: the chat channels' send functions (ShopContext.senders), to tell buyers about their payment."""
        settings = shop.settings.wechatpay
        return cls(shop, load_config(settings), link_key(settings), notices=ShopNotices(shop, senders))

    def routes(self) -> list[Route]:
        return [Route("/pay/wechat/notify", self.notify, methods=["POST"]),
                Route("/pay/wechat/{order_ref}", self.pay_page, methods=["GET"])]

    def job(self) -> tuple[str, float, Callable[[], Awaitable[int]]]:
        return "wechatpay_reconcile", self.shop.settings.wechatpay.reconcile_every_seconds, self.reconciler.run_once

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- notify ----------------------------------------------------------------
    async def notify(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_NOTIFY_BODY:
            return JSONResponse({"code": "FAIL", "message": "body too large"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_NOTIFY_BODY:
                return JSONResponse({"code": "FAIL", "message": "body too large"}, status_code=413)
        try:
            await self.notifications.handle(request.headers, body)
        except NotifyRejected as exc:
            return JSONResponse({"code": "FAIL", "message": exc.message}, status_code=exc.status)
        except Exception:  # noqa: BLE001 - answer FAIL so WeChat Pay retries; the traceback carries ids only
            log.exception("event=wechatpay.notify_failed")
            return JSONResponse({"code": "FAIL", "message": "internal error"}, status_code=500)
        return Response(status_code=204)

    # -- pay page --------------------------------------------------------------
    def _page(self, lang: str, body: str, status: int = 200) -> HTMLResponse:
        title = html.escape(self.t(lang, "wxpay.title"))
        doc = ("<!doctype html><html><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
               f"<title>{title}</title></head><body style=\"font-family:sans-serif;text-align:center\">"
               f"<h1>{title}</h1>{body}</body></html>")
        return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)

    def _message(self, lang: str, msgid: str, status: int) -> HTMLResponse:
        return self._page(lang, f"<p>{html.escape(self.t(lang, msgid))}</p>", status)

    async def pay_page(self, request: Request) -> Response:
        ref = request.path_params["order_ref"]
        q = request.query_params
        openid = q.get("openid", "")
        now = self.clock()
        default = self.shop.settings.default_language
        if not link_valid(self.key, ref, openid, q.get("exp", ""), q.get("sig", ""), now):
            log.info("event=wechatpay.link_rejected")
            return self._message(default, "wxpay.link_invalid", 403)
        order = await self.shop.store.order_by_ref(ref)
        if order is None:
            return self._message(default, "wxpay.unknown_order", 404)
        lang = normalise_language(order.language, default)
        if order.state in KEPT_THE_MONEY:
            return self._message(lang, "wxpay.already_paid", 200)
        if (order.state not in HOLDING or order.expires_at <= now
                or order.currency != self.config.currency):
            return self._message(lang, "wxpay.not_payable", 409)
        payer = openid or (order.user_id if order.channel == WECHAT_CHANNEL else "")
        refusal = await self._risk_check(request, order, payer, lang)
        if refusal is not None:
            return refusal
        # JSAPI needs the payer's openid; inside WeChat without one the QR still works (long press to scan)
        inside = "MicroMessenger" in request.headers.get("user-agent", "") and bool(payer)
        try:
            prepay = await self._prepay(order, payer if inside else "", lang)
        except WeChatPayError as exc:
            log.warning("event=wechatpay.prepay_failed order_id=%s code=%s", order.id, exc.code)
            if exc.code == "ORDERPAID":
                return self._message(lang, "wxpay.already_paid", 200)
            return self._message(lang, "wxpay.unavailable", 502)
        return self._jsapi_page(order, lang, prepay) if inside else self._native_page(order, lang, prepay)

    async def _failed_payment(self, order: Order, fingerprint: str) -> None:
        if self.shop.risk is not None:
            await self.shop.risk.record_failed_payment(Signals(order.channel, order.user_id, order.sku_id,
                                                               order.amount, order.currency, order.quantity,
                                                               fingerprint=fingerprint, order_id=order.id))

    async def _risk_check(self, request: Request, order: Order, payer: str, lang: str) -> Response | None:
        """Payment-creation checks of the risk module, with the buyer's address (X-Forwarded-For only from the
        configured proxies) and the keyed fingerprint of the paying openid."""
        peer = request.client.host if request.client else ""
        ip = client_ip(peer, request.headers.get("x-forwarded-for", ""), self.trusted_proxies)
        fingerprint = self.notifications.payer_fingerprint(payer)
        try:
            await self.shop.orders.check_payable(order.ref, order.amount, order.currency, ip=ip,
                                                 fingerprint=fingerprint)
        except (RiskDenied, RiskChallenge) as exc:
            text = self.t(lang, exc.message_id, seconds=exc.params.get("seconds", 60))
            return self._page(lang, f"<p>{html.escape(text)}</p>", 429 if isinstance(exc, RiskChallenge) else 403)
        except ShopError:
            return self._message(lang, "wxpay.not_payable", 409)
        return None

    async def _prepay(self, order: Order, openid: str, lang: str) -> str:
        """prepay_id (JSAPI, with openid) or code_url (Native), created once per order and trade type (each with
        its own out_trade_no) and reused on reload."""
        kind = "jsapi" if openid else "native"
        cache_key = f"wechatpay.prepay.{kind}.{order.ref}"
        if openid:
            cache_key += "." + hashlib.sha256(openid.encode()).hexdigest()[:16]
        now = self.clock()
        cached = await self.shop.store.kv_get(cache_key, now)
        if cached:
            return cached
        # before the prepay: a crash after it still gets reconciled
        await self.watch.add(out_trade_no(order.ref, kind))
        description = await self._description(order, lang)
        if openid:
            value = await self.client.prepay_jsapi(order, openid, description)
        else:
            value = await self.client.prepay_native(order, description)
        await self.shop.store.kv_put(cache_key, value, min(order.expires_at, now + PREPAY_KEEP))
        if order.state == OrderState.RESERVED:
            await self.shop.orders.await_payment(order)
        log.info("event=wechatpay.prepay order_id=%s kind=%s", order.id, kind)
        return value

    async def _description(self, order: Order, lang: str) -> str:
        sku = await self.shop.store.sku_by_id(order.sku_id)
        product = await self.shop.store.product_by_id(sku.product_id) if sku else None
        if product is None:
            return order.ref
        name = product.name_zh if lang == "zh_CN" else product.name_en
        return f"{name} x{order.quantity}"

    def _summary(self, order: Order, lang: str) -> str:
        amount = self.t.money(lang, order.amount, order.currency)
        return (f"<p>{html.escape(self.t(lang, 'wxpay.order', ref=order.ref))}</p>"
                f"<p><strong>{html.escape(self.t(lang, 'wxpay.amount', amount=amount))}</strong></p>")

    def _jsapi_page(self, order: Order, lang: str, prepay_id: str) -> HTMLResponse:
        timestamp, nonce, package = str(int(self.clock().timestamp())), nonce_str(), f"prepay_id={prepay_id}"
        params = {"appId": self.config.app_id, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                  "signType": "RSA",
                  "paySign": jsapi_pay_sign(self.config.merchant_key, self.config.app_id, timestamp, nonce, package)}
        texts = {"ok": self.t(lang, "wxpay.paid_ok"), "failed": self.t(lang, "wxpay.pay_failed")}
        script = (
            f"var params={script_json(params)};var texts={script_json(texts)};"
            "function pay(){WeixinJSBridge.invoke('getBrandWCPayRequest',params,function(res){"
            "document.getElementById('status').textContent="
            "res.err_msg==='get_brand_wcpay_request:ok'?texts.ok:texts.failed;});}"
            "document.getElementById('pay').onclick=pay;"
            "if(typeof WeixinJSBridge==='undefined'){document.addEventListener('WeixinJSBridgeReady',pay,false);}"
            "else{pay();}"
        )
        button = html.escape(self.t(lang, "wxpay.pay_button"))
        body = (f"{self._summary(order, lang)}<p><button id=\"pay\">{button}</button></p>"
                f"<p id=\"status\"></p><script>{script}</script>")
        return self._page(lang, body)

    def _native_page(self, order: Order, lang: str, code_url: str) -> HTMLResponse:
        scan = html.escape(self.t(lang, "wxpay.scan"))
        body = f"{self._summary(order, lang)}<div style=\"max-width:320px;margin:auto\">{qr_svg(code_url)}</div>" \
               f"<p>{scan}</p>"
        return self._page(lang, body)
